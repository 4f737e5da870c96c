#!/usr/bin/python3
"""Checks that deploy/ only uses what docs/metrics.md promises.

  check_metric_names.py SOURCE_DIR

- Every clipserve_* and process_* name in the dashboard's and the rule
  file's expressions is a metric docs/metrics.md lists (histograms with their
  _bucket/_sum/_count series; _bucket only on histograms).
- Every recording rule an expression uses (clipserve:...) is defined in
  deploy/alerts.yml, and every one defined there is used by an alert, the
  dashboard or documented in docs/observability.md.
- Every alert has `for:`, a severity label of warning or critical, and a
  summary and description; docs/observability.md names every alert.
- The labels an expression groups or matches on are ones the metric has
  (docs/metrics.md's labels, plus the target labels job/instance and the
  Kubernetes namespace/pod).

Exit status 0 when all holds, 1 otherwise (PyYAML, Debian's python3-yaml,
missing included).
"""
import json
import os
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML missing; install Debian's python3-yaml (scripts/install-deps.sh)")

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_doc import documented_metrics, report  # noqa: E402

problems = []
TARGET_LABELS = {"job", "instance", "namespace", "pod", "node"}


def expressions(source):
    out = []  # (where, expr)
    with open(os.path.join(source, "deploy/alerts.yml")) as f:
        rules = yaml.safe_load(f)
    for g in rules["groups"]:
        for r in g["rules"]:
            name = r.get("record") or r.get("alert")
            out.append((f"deploy/alerts.yml {name}", r["expr"]))
    with open(os.path.join(source, "deploy/grafana/dashboards/clipserve.json")) as f:
        dash = json.load(f)

    def walk(panels):
        for p in panels or []:
            for t in p.get("targets") or []:
                if t.get("expr"):
                    out.append((f"dashboard panel '{p.get('title')}'", t["expr"]))
            walk(p.get("panels"))

    walk(dash.get("panels"))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            out.append((f"dashboard variable '{v.get('name')}'", q))
    return rules, out


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    source = sys.argv[1]
    metrics = documented_metrics(os.path.join(source, "docs/metrics.md"))
    if len(metrics) < 20:
        problems.append(f"only {len(metrics)} metrics parsed from docs/metrics.md: {sorted(metrics)}")
    rules, exprs = expressions(source)

    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used_records = set()
    for where, expr in exprs:
        bare = strip_strings(expr)
        for name in re.findall(r"(?<![\w:])((?:clipserve|process)_[a-z0-9_]+)", bare):
            base, kind = name, None
            if name in metrics:
                kind = metrics[name][0]
            else:
                for suffix in ("_bucket", "_sum", "_count"):
                    if name.endswith(suffix) and metrics.get(name[: -len(suffix)], ("",))[0] == "histogram":
                        base, kind = name[: -len(suffix)], "histogram"
            if kind is None:
                problems.append(f"{where}: {name} is not in docs/metrics.md")
                continue
            if kind == "histogram" and base == name:
                problems.append(f"{where}: histogram {name} used without _bucket/_sum/_count")
            # Labels matched on in this selector.
            allowed = metrics[base][1] | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
            sel = re.search(re.escape(name) + r"\{([^}]*)\}", expr)
            if sel:
                for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", sel.group(1)):
                    if label not in allowed:
                        problems.append(f"{where}: {name} has no label {label!r} (docs/metrics.md)")
        for rec in re.findall(r"(?<![\w:])(clipserve:[a-z0-9_:]+)", bare):
            used_records.add(rec)
            if rec not in recorded:
                problems.append(f"{where}: recording rule {rec} is not defined in deploy/alerts.yml")
        # Grouping labels must exist on something the expression reads.
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare):
            for label in [l.strip() for l in group.split(",") if l.strip()]:
                known = TARGET_LABELS | {"le"} | set().union(*(l for _, l in metrics.values()))
                if label not in known:
                    problems.append(f"{where}: groups by unknown label {label!r}")

    obs_path = os.path.join(source, "docs/observability.md")
    obs = open(obs_path).read() if os.path.exists(obs_path) else ""
    if not obs:
        problems.append("docs/observability.md is missing")
    for rec in sorted(recorded - used_records):
        if rec not in obs:
            problems.append(f"recording rule {rec} is used nowhere and not documented in docs/observability.md")

    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    if len(alerts) < 5:
        problems.append(f"only {len(alerts)} alerts")
    for a in alerts:
        name = a["alert"]
        if not a.get("for"):
            problems.append(f"alert {name} has no for:")
        if (a.get("labels") or {}).get("severity") not in ("warning", "critical"):
            problems.append(f"alert {name}: severity must be warning or critical")
        ann = a.get("annotations") or {}
        if not ann.get("summary") or not ann.get("description"):
            problems.append(f"alert {name}: needs summary and description annotations")
        if name not in obs:
            problems.append(f"alert {name} is not described in docs/observability.md")
    groups = [g["name"] for g in rules["groups"]]
    if "clipserve" not in groups:
        problems.append(f"no rule group 'clipserve' (groups: {groups})")

    print(f"{len(exprs)} expressions, {len(metrics)} documented metrics, "
          f"{len(recorded)} recording rules, {len(alerts)} alerts")
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
