#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks
# formatting and lints (host, SDK, operators), then runs every test. The
# end-to-end tests build the operators in plugins/ with `weir build` and run
# the real `weir` binary. The Kafka tests get a broker of their own, started
# here with scripts/services.sh (port $WEIR_TEST_KAFKA_PORT, default 29092,
# state in a temporary folder) and stopped on exit; its address goes to
# the tests as WEIR_TEST_KAFKA. A WEIR_TEST_KAFKA already set is used as is.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --all
cargo fmt --all --check
(cd plugins/rust && cargo fmt --all --check)
(cd tests/plugins && cargo fmt --all --check)
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
(cd plugins/rust && cargo clippy --target wasm32-wasip2 --all-targets -- -D warnings)
(cd tests/plugins && cargo clippy --target wasm32-wasip2 --all-targets -- -D warnings)
# The operators' own unit tests (windowed-sum's integer parsing), on the host.
(cd plugins/rust && cargo test -p windowed-sum)
# The SDKs' shared contract vectors (sdk/PROTOCOL.md), in each language's own runner.
./sdk/test.sh
if [[ -z "${WEIR_TEST_KAFKA:-}" ]]; then
  kafka_dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-test-kafka.XXXXXX")"
  # Stops only the broker started here, by its PID file in $kafka_dir.
  trap './scripts/services.sh down kafka --dir "$kafka_dir" || true' EXIT
  WEIR_TEST_KAFKA="$(./scripts/services.sh up kafka --port "${WEIR_TEST_KAFKA_PORT:-29092}" --dir "$kafka_dir" | tail -n 1)"
  export WEIR_TEST_KAFKA
fi
echo "Kafka for the tests: WEIR_TEST_KAFKA=$WEIR_TEST_KAFKA" >&2
cargo test --workspace
