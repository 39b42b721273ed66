#!/usr/bin/env bash
# Builds a JavaScript weir operator: build.sh PLUGIN_DIR OUT.wasm
#
# What `weir build` does for a folder with a package.json: stage the
# operator's files, the SDK (as weir.js, so `import ... from "weir"` finds it)
# and the WIT into a temporary directory, then run componentize-js there
# (it needs the WIT under the current directory). PLUGIN_DIR is not modified.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
plugin="$(cd "$1" && pwd)"
out="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
WEIR_TOOLCHAINS="${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}"
PATH="$PATH:$WEIR_TOOLCHAINS/bin:$WEIR_TOOLCHAINS/npm/node_modules/.bin"

# The entry module: package.json's "main", else index.js.
main="$(node -e 'const p = require(process.argv[1]); console.log(p.main || "index.js")' "$plugin/package.json")"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$plugin/." "$stage/"
cp "$here/weir.js" "$stage/weir.js"
rm -rf "$stage/.weir-wit" && cp -R "$repo/wit" "$stage/.weir-wit"

# stdio, random and clocks stay enabled (console output reaches the host's
# log); http and fetch-event are disabled: the host gives no wasi:http.
cd "$stage"
componentize-js "$main" --wit .weir-wit --world-name operator -d http fetch-event -o "$out"
