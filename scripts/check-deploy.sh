#!/usr/bin/env bash
# Validates deploy/ with real tools: promtool (rules + unit tests), kustomize rendering (base and
# the example overlay) validated against the Kubernetes schemas, the dashboard's and alerts'
# PromQL against the metrics momentd exports, and the ConfigMap's copy of the configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

promtool check rules deploy/prometheus/alerts.yaml
(cd deploy/prometheus && promtool test rules alerts_test.yaml)

cmp -s config/momentd.toml deploy/k8s/base/momentd.toml || {
  echo "deploy/k8s/base/momentd.toml differs from config/momentd.toml: cp config/momentd.toml deploy/k8s/base/" >&2
  exit 1
}
for k in deploy/k8s/base deploy/k8s/overlays/example; do
  kubectl kustomize "$k" >"$out/rendered.yaml"
  echo "rendered $k: $(grep -c '^kind:' "$out/rendered.yaml") resources"
  kubernetes-validate --strict --quiet -k "${K8S_VERSION:-1.31.0}" "$out/rendered.yaml"
done

python3 scripts/check_promql.py deploy/grafana/momentd.json deploy/prometheus/alerts.yaml

# The Dockerfile copies only what exists.
grep -E '^COPY [^-]' deploy/Dockerfile | awk '{for (i=2;i<NF;i++) print $i}' | while read -r f; do
  [ -e "$f" ] || { echo "deploy/Dockerfile copies $f, which does not exist" >&2; exit 1; }
done
echo "check-deploy: ok"
