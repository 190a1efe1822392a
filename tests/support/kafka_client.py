#!/usr/bin/env python3
"""An independent Kafka client for momentd's integration tests (confluent-kafka from PyPI).

  kafka_client.py produce BOOTSTRAP TOPIC FILE   each non-empty line of FILE, keyed by its employee_id
  kafka_client.py consume BOOTSTRAP TOPIC N SECS print up to N record values (one per line) read
                                                 from the start of every partition, waiting at
                                                 most SECS seconds
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap, topic, path):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                key = json.loads(line).get("employee_id")
            except (ValueError, AttributeError):
                key = None
            p.produce(topic, value=line.encode(), key=key.encode() if isinstance(key, str) else None)
            n += 1
            p.poll(0)
    left = p.flush(30)
    if left:
        sys.exit(f"{left} records not delivered")
    print(n)


def consume(bootstrap, topic, n, secs):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "momentd-test-reader",
                  "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
    c.assign(parts)
    got = 0
    deadline = time.time() + secs
    while got < n and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        print(m.value().decode())
        got += 1
    c.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)
