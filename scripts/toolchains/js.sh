#!/usr/bin/env bash
# The JavaScript recipe: `componentize-js` (npm `@bytecodealliance/componentize-js`,
# SpiderMonkey compiled to WebAssembly, with the operator's JS snapshotted in).
# It needs Node.js 18+ and npm on the PATH; nothing is compiled here.
source "$(dirname "$0")/common.sh"
command -v node >/dev/null && command -v npm >/dev/null || {
  say "Node.js and npm are needed (Debian: apt-get install nodejs npm)"
  exit 1
}
npm_tool @bytecodealliance/componentize-js@0.23.0
