#!/usr/bin/env bash
# Produces the simulation straight to a broker on loopback at a target rate and reports the rate
# achieved: `momentd simulate --kafka` against the mock cluster (in its own process).
#   scripts/bench-simulate.sh [RATE] [SECS]     (default 50000 events/s for 60 s)
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-50000}"
secs="${2:-60}"
cargo build --release --quiet --bin momentd --bin momentd-mock-broker
coproc BROKER { exec target/release/momentd-mock-broker hr.interactions:6; }
read -r line <&"${BROKER[0]}"
bootstrap="${line#bootstrap=}"
trap 'kill "$BROKER_PID" 2>/dev/null || true' EXIT
# Enough events for the duration at the rate: 2.5 events per employee-day.
employees=$(( rate * secs / 2 / 60 + 1000 ))
echo "bench-simulate: mock cluster at $bootstrap; $employees employees x 60 days; target $rate events/s for $secs s"
target/release/momentd simulate --employees "$employees" --days 60 --seed 1 \
  --kafka "$bootstrap" --rate "$rate" --duration "$secs" --out "$(mktemp -d)"
