#!/usr/bin/env bash
# Builds a Go weir operator into a component: sdk/go/build.sh PLUGIN_DIR OUT.wasm
#
# What `weir build` does for a Go plugin (a folder with go.mod + main.go):
# stage the plugin, this SDK (module weir.dev/sdk) and the vendored
# bindings runtime (module go.bytecodealliance.org/pkg) side by side in a
# temporary Go workspace, generate the bindings from wit/ into the SDK's
# internal/wit, compile to a wasip1 reactor, and wrap it as a component with
# the preview1 reactor adapter. PLUGIN_DIR is only read; nothing is
# downloaded (GOPROXY=off).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
plugin=$(cd "$1" && pwd)
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
sdk=$(cd "$(dirname "$0")" && pwd)
wit="$sdk/../../wit"
tools="${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}"
export PATH="$PATH:$tools/bin:$tools/venv/bin"
adapter="${WEIR_ADAPTER:-$HOME/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/wasi-preview1-component-adapter-provider-48.0.8/artefacts/wasi_snapshot_preview1.reactor.wasm}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# 1. Stage: the plugin, the SDK (without its third_party), the bindings runtime.
cp -R "$plugin" "$stage/plugin"
mkdir -p "$stage/sdk"
cp "$sdk/go.mod" "$stage/sdk/"
cp -R "$sdk/weir" "$sdk/internal" "$stage/sdk/"
cp -R "$sdk/third_party/go-pkg" "$stage/go-pkg"
cat > "$stage/go.work" <<'WORK'
go 1.27.1

use (
	./plugin
	./sdk
	./go-pkg
)
WORK

# 2. Bindings, generated into the SDK's internal/wit.
wit-bindgen go "$wit" --world operator --pkg-name weir.dev/sdk/internal/wit \
  --out-dir "$stage/sdk/internal/wit" >"$stage/wit-bindgen.log" 2>&1 \
  || { cat "$stage/wit-bindgen.log" >&2; exit 1; }

# 3. Compile: a wasip1 reactor (c-shared), Go's own caches kept under the
#    toolchains folder. GOEXPERIMENT=nojsonv2: encoding/json's classic
#    implementation, same output, 1.3 MB less than the json/v2-based one.
(cd "$stage/plugin" && \
  GOWORK="$stage/go.work" GOOS=wasip1 GOARCH=wasm GOEXPERIMENT=nojsonv2 \
  GOFLAGS=-mod=readonly GOPROXY=off \
  GOTOOLCHAIN=local GOCACHE="$tools/go/cache" GOPATH="$tools/go/path" \
  GOMODCACHE="$tools/go/mod" \
  go build -trimpath -buildmode=c-shared -ldflags=-checklinkname=0 -o "$stage/core.wasm" .)

# 4. Component: embed the WIT, adapt WASI preview1 to 0.2.
wasm-tools component embed "$wit" --world operator "$stage/core.wasm" -o "$stage/embedded.wasm"
wasm-tools component new "$stage/embedded.wasm" \
  --adapt wasi_snapshot_preview1="$adapter" -o "$out"
