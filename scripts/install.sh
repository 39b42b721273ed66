#!/usr/bin/env bash
# Installs what weir needs beyond a Rust toolchain: the wasm32-wasip2 target
# that Rust operators are built for. Safe to run again.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the Rust target wasm32-wasip2 ..." >&2
  rustup target add wasm32-wasip2
fi
