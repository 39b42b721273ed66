#!/usr/bin/env bash
# The C recipe's tools: clang 19 with wasm-ld and the WASI libc (Debian 12's
# packages), plus the shared component tools (wasm-tools, wit-bindgen).
# The preview1 reactor adapter comes with weir (crate
# wasi-preview1-component-adapter-provider), not from here.
source "$(dirname "$0")/common.sh"
apt_pkgs clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
# clang-19 runs `wasm-ld`; Debian names it wasm-ld-19 on the PATH (and wasm-ld
# only in /usr/lib/llvm-19/bin): a link for any build that looks on the PATH.
ln -sf "$(command -v wasm-ld-19 || echo /usr/lib/llvm-19/bin/wasm-ld)" "$WEIR_TOOLCHAINS/bin/wasm-ld"
"$(dirname "$0")/wasm-tools.sh"
