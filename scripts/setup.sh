#!/usr/bin/env bash
# Installs what building momentd needs on a fresh Debian machine with a Rust toolchain; with
# --test, also what the tests need (the tansu broker, Prometheus, Python clients, kubectl).
# Idempotent: skips what is already there.
set -euo pipefail
tests=false
[ "${1:-}" = "--test" ] && tests=true

need_pkgs=()
pkgs=(pkg-config libssl-dev zlib1g-dev build-essential python3)
# prometheus: promtool for the alert rules and a real server for the scrape test.
$tests && pkgs+=(prometheus)
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
if ! $tests; then
  echo "setup: ok (add --test for what the tests need)"
  exit 0
fi

# The integration tests' second broker: tansu with SQLite storage (docs/development.md, "The test brokers"). Its
# default build has no storage engine. Building it takes 15-20 minutes on 2 cores, once.
TANSU_VERSION=0.6.0
if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "setup: building tansu $TANSU_VERSION (15-20 min, once)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features libsql,dynostore --quiet
fi

# The fuzz targets' driver (scripts/fuzz.sh): cargo-fuzz, built from crates.io.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "setup: building cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --quiet
fi

# The independent Kafka client of the integration tests: Python confluent-kafka from PyPI.
if ! python3 -c "import confluent_kafka" 2>/dev/null; then
  echo "setup: installing confluent-kafka (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "confluent-kafka==2.16.1"
fi
# The manifests are rendered with kubectl's kustomize and validated against the Kubernetes schemas.
if ! command -v kubectl >/dev/null; then
  echo "setup: installing kubectl (Debian kubernetes-client)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubernetes-client
fi
if ! python3 -c "import kubernetes_validate" 2>/dev/null; then
  echo "setup: installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
echo "setup: ok"
