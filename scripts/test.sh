#!/usr/bin/env bash
# The test command: builds everything (benches included, so they cannot rot) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --all-targets
cargo test --locked --all-features -- --test-threads="${TEST_THREADS:-2}"
