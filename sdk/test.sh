#!/usr/bin/env bash
# Runs the shared test vectors of sdk/vectors/ (the contract of
# sdk/PROTOCOL.md) against every SDK, each in its own language's runner:
#
#   rust    cargo test -p weir-sdk                        (sdk/src/vectors.rs)
#   go      go test ./weir, in sdk/go                     (sdk/go/weir/vectors_test.go)
#   js      node --test --test-reporter=spec sdk/js/tests/                     (sdk/js/tests/vectors.test.mjs)
#   python  python3 -m unittest discover -s sdk/python/tests
#   c       sdk/c/tests/vectors.c built with the host's cc (and wit-bindgen c's operator.h)
#
#   sdk/test.sh              every SDK
#   sdk/test.sh LANG...      only these: rust go js python c
#
# Tools are found as `weir build` finds them: in $WEIR_TOOLCHAINS (default
# ~/.weir/toolchains: bin/, venv/bin/, npm/node_modules/.bin/), then on
# PATH; scripts/install.sh LANG installs them. Every runner runs even if
# one fails; the script fails if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
toolchains="${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}"
export PATH="$toolchains/bin:$toolchains/venv/bin:$toolchains/npm/node_modules/.bin:$PATH"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "sdk/test.sh: \`$1\` is not installed: run scripts/install.sh $2" >&2
    return 1
  fi
}

work="$(mktemp -d "${TMPDIR:-/tmp}/weir-sdk-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

run_rust() {
  need cargo rust && cargo test --quiet -p weir-sdk
}

run_go() {
  need go go || return 1
  # The SDK's module and the go-pkg it requires, as `weir build` stages
  # them (host/src/build/go.rs), with the same settings: nothing is
  # downloaded, and the caches are the builds'.
  printf 'go 1.27.1\n\nuse (\n\t%s\n\t%s\n)\n' "$PWD/sdk/go" "$PWD/sdk/go/third_party/go-pkg" >"$work/go.work"
  (cd sdk/go && GOWORK="$work/go.work" GOEXPERIMENT=nojsonv2 GOFLAGS=-mod=readonly GOPROXY=off \
    GOTOOLCHAIN=local GOCACHE="$toolchains/go/cache" GOPATH="$toolchains/go/path" \
    GOMODCACHE="$toolchains/go/mod" go test -count=1 ./weir)
}

run_js() {
  need node js || return 1
  # The tests map weir.js's WIT imports with module.register (Node 20.6+).
  if ! node -e 'process.exit(typeof require("node:module").register === "function" ? 0 : 1)'; then
    echo "sdk/test.sh: the JavaScript tests need Node.js 20.6 or later (found $(node --version))" >&2
    return 1
  fi
  node --test --test-reporter=spec sdk/js/tests/
}

run_python() {
  need python3 python && need componentize-py python && WEIR_TOOLCHAINS="$toolchains" \
    python3 -m unittest discover -s sdk/python/tests
}

run_c() {
  need cc c && need wit-bindgen c || return 1
  local out
  out="$(wit-bindgen c wit --world operator --out-dir "$work/c" 2>&1)" || { echo "$out" >&2; return 1; }
  cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -O1 -I sdk/c -I "$work/c" \
      sdk/c/weir.c sdk/c/weir_util.c sdk/c/tests/host.c sdk/c/tests/vectors.c -o "$work/vectors" &&
    "$work/vectors" sdk/vectors
}

langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(rust go js python c)
failed=()
for lang in "${langs[@]}"; do
  case "$lang" in
    rust|go|js|python|c) ;;
    *) echo "sdk/test.sh: unknown language \`$lang\`: expected rust, go, js, python or c" >&2; exit 2 ;;
  esac
  echo "== sdk/test.sh: $lang" >&2
  "run_$lang" || failed+=("$lang")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "sdk/test.sh: the vectors failed for: ${failed[*]}" >&2
  exit 1
fi
echo "sdk/test.sh: the vectors passed for: ${langs[*]}" >&2
