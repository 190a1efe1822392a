#!/usr/bin/env bash
# The test command: builds everything (benches included, so they cannot rot), runs every test
# (integration tests start their brokers and a Prometheus server on loopback), and validates
# deploy/ with promtool, kustomize + the Kubernetes schemas, and the PromQL metric check.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --all-targets
cargo test --locked --all-features -- --test-threads="${TEST_THREADS:-2}"
bash scripts/check-deploy.sh
