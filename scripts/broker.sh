#!/usr/bin/env bash
# A development broker on loopback: tansu with SQLite storage in .broker/ (127.0.0.1:9092), with
# momentd's topics created.
#   scripts/broker.sh start [PORT]   start it (in the background) and create the topics
#   scripts/broker.sh stop           stop it
#   scripts/broker.sh status
# For the fastest loop without any broker, `momentd dev` runs an in-process mock cluster instead.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.broker
port="${2:-9092}"
case "${1:-}" in
  start)
    mkdir -p "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "broker: already running (pid $(cat "$dir/pid"))"; exit 0
    fi
    url="tcp://127.0.0.1:$port"
    (cd "$dir" && { nohup tansu broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine sqlite://tansu.db >tansu.log 2>&1 & echo $! >pid; })
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
    # Without this index every fetch scans all record headers (docs/development.md, "The test brokers").
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create index if not exists header_topition_offset on header (topition, offset_id)'); c.commit()" "$dir/tansu.db"
    for t in hr.interactions hr.triggers hr.interactions.dlq hr.triggers.audit; do
      tansu topic create --broker "$url" --partitions 6 "$t" >/dev/null 2>&1 || true
    done
    echo "broker: tansu on 127.0.0.1:$port (pid $(cat "$dir/pid")); MOMENTD__KAFKA__BROKERS=127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -f "$dir/pid"; fi
    echo "broker: stopped"
    ;;
  status)
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then echo "running"; else echo "stopped"; exit 1; fi
    ;;
  *) echo "usage: scripts/broker.sh start [PORT] | stop | status" >&2; exit 2 ;;
esac
