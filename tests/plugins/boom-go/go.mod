module boomgo

go 1.27.1

require weir.dev/sdk v0.1.0
