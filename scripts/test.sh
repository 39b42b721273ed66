#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# formatting and lints (host, SDK, operators), then runs every test. The
# end-to-end tests build the operators in plugins/ with `weir build` and run
# the real `weir` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --all
cargo fmt --all --check
(cd plugins/rust && cargo fmt --all --check)
(cd tests/plugins && cargo fmt --all --check)
cargo clippy --workspace --all-targets -- -D warnings
(cd plugins/rust && cargo clippy --target wasm32-wasip2 --all-targets -- -D warnings)
(cd tests/plugins && cargo clippy --target wasm32-wasip2 --all-targets -- -D warnings)
cargo test --workspace
