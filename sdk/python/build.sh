#!/usr/bin/env bash
# Builds a Python weir operator: build.sh PLUGIN_DIR OUT.wasm
#
# PLUGIN_DIR holds `app.py`, the operator module (it ends with
# `Guest = weir.export(MyOperator)`), and possibly more modules it imports.
# The WIT contract (the repo's `wit/`) and the SDK module (`sdk/python/weir.py`)
# are staged next to a copy of the plugin folder, which is left untouched.
# Tool: componentize-py 0.25.1 (scripts/toolchains/python.sh), found on PATH
# or under $WEIR_TOOLCHAINS (default ~/.weir/toolchains).
set -euo pipefail
plugin_dir="$1"
out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
toolchains="${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}"

componentize_py="$(command -v componentize-py || true)"
for c in "$toolchains/bin/componentize-py" "$toolchains/venv/bin/componentize-py"; do
  [ -n "$componentize_py" ] && break
  [ -x "$c" ] && componentize_py="$c"
done
if [ -z "$componentize_py" ]; then
  echo "build: componentize-py not found: run scripts/toolchains/python.sh" >&2
  exit 1
fi
if [ ! -f "$plugin_dir/app.py" ]; then
  echo "build: $plugin_dir has no app.py" >&2
  exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/app" "$stage/sdk"
cp -r "$repo/wit" "$stage/wit"
cp "$here/weir.py" "$stage/sdk/weir.py"
cp -r "$plugin_dir/." "$stage/app/"
rm -rf "$stage/app/__pycache__"

mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$stage"
"$componentize_py" -d wit -w operator componentize app -p app -p sdk -o "$out"
