#!/usr/bin/env python3
"""Checks that every PromQL expression in the Grafana dashboard and the alert rules references
only metrics momentd exports (the names in src/metrics.rs), and that the dashboard has a
datasource variable and no hard-coded datasource UID.

  check_promql.py DASHBOARD.json ALERTS.yaml
"""
import json
import re
import sys

root = sys.path[0] + "/.."
src = open(f"{root}/src/metrics.rs", encoding="utf-8").read()
exported = set(re.findall(r'pub const \w+: &str = "(momentd_\w+)";', src))
histograms = {n for n in exported if re.search(
    r'describe_histogram!\(\s*' + [k for k, v in re.findall(r'pub const (\w+): &str = "(momentd_\w+)";', src) if v == n][0] + r'\b', src)}
allowed = set(exported)
for h in histograms:
    allowed |= {h + "_bucket", h + "_sum", h + "_count"}


def metrics_in(expr):
    return set(re.findall(r"\bmomentd_[a-z0-9_]+", expr))


def check(where, expr, problems):
    used = metrics_in(expr)
    if not used:
        problems.append(f"{where}: no momentd metric in {expr!r}")
    for m in used - allowed:
        problems.append(f"{where}: {m} is not exported by momentd")


problems = []
dash = json.load(open(sys.argv[1], encoding="utf-8"))
variables = {v["name"]: v for v in dash["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource":
    problems.append("dashboard: no datasource variable")
exprs = 0


def walk(node, where):
    global exprs
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") not in (None, "${datasource}"):
            problems.append(f"{where}: hard-coded datasource uid {ds.get('uid')!r}")
        if "expr" in node:
            exprs += 1
            check(where, node["expr"], problems)
        for k, v in node.items():
            walk(v, f"{where}/{node.get('title', k) if k == 'panels' else k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, f"{where}[{i}]")


walk(dash["panels"], "dashboard")
alerts = open(sys.argv[2], encoding="utf-8").read()
for name, expr in re.findall(r"- alert: (\w+)\n\s+expr: \|?\s*\n?((?:.*\n)+?)\s+for:", alerts):
    exprs += 1
    check(f"alert {name}", expr, problems)
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"check_promql: {exprs} expressions reference only the {len(exported)} exported metrics")
