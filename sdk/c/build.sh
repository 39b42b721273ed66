#!/usr/bin/env bash
# Builds a C operator into a component: sdk/c/build.sh PLUGIN_DIR OUT.wasm
#
# The recipe `weir build` follows for a folder of `*.c` files. PLUGIN_DIR is
# not modified: the bindings and the core module are made in a temporary dir.
#   1. wit-bindgen c     bindings of world `operator` (operator.h/.c and the
#                        component type object that embeds the world)
#   2. clang-19          plugin + SDK + bindings -> a wasm32-wasi reactor module
#   3. wasm-tools        component new, with the WASI preview1 reactor adapter
# Tools: wit-bindgen and wasm-tools on PATH or in $WEIR_TOOLCHAINS
# (scripts/toolchains/c.sh installs them); clang-19 and wasi-libc from Debian.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
PLUGIN_DIR=$1
OUT=$2
SDK=$(cd "$(dirname "$0")" && pwd)
WIT=${WEIR_WIT:-$SDK/../../wit}
WEIR_TOOLCHAINS=${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}
PATH="$PATH:$WEIR_TOOLCHAINS/bin:$WEIR_TOOLCHAINS/venv/bin"
ADAPTER=${WEIR_ADAPTER:-$HOME/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wasi-preview1-component-adapter-provider-48.0.8/artefacts/wasi_snapshot_preview1.reactor.wasm}

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

wit-bindgen c "$WIT" --world operator --out-dir "$STAGE/bindings" >/dev/null
clang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall \
  -Wl,--strip-debug -I "$SDK" -I "$STAGE/bindings" \
  "$PLUGIN_DIR"/*.c "$SDK/weir.c" "$SDK/weir_util.c" \
  "$STAGE/bindings/operator.c" "$STAGE/bindings/operator_component_type.o" \
  -o "$STAGE/core.wasm"
wasm-tools component new "$STAGE/core.wasm" --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
