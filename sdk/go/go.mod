// The weir SDK for Go. Plugins require it (`require weir.dev/sdk v0.1.0`);
// `weir build` stages it with the plugin in a Go
// workspace, so it is never downloaded. The bindings under internal/wit are
// generated at build time by `wit-bindgen go`.
module weir.dev/sdk

go 1.27.1

require go.bytecodealliance.org/pkg v0.4.0
