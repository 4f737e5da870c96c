#!/usr/bin/python3
"""Checks deploy/grafana/dashboards/clipserve.json.

  check_dashboard.py PROMTOOL DASHBOARD_JSON

1. Every PromQL expression in the dashboard (targets[].expr in every panel,
   also panels nested in collapsed rows, and the selectors of the template
   variables' label_values() queries) parses: Grafana variables are replaced
   with plausible values, each expression becomes one recording rule of a
   generated rules file, and `promtool check rules` must accept the file.
   A variable that the dashboard does not define (a typo) fails.
2. The dashboard has what docs/observability.md promises: the panels by what
   they query (throughput by model and code, p50/p95/p99, queue vs compute
   time, the batch-size heatmap, queue depth, in-flight, GPU utilisation,
   memory used/total and power, process memory and CPU), the ${datasource}
   variable, no hard-coded data source, sane ids and layout.

Exit status 0 when all holds, 1 otherwise (every problem is printed;
PROMTOOL missing included).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_doc import report  # noqa: E402

BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")

problems = []


def problem(msg):
    problems.append(msg)


def walk_panels(panels, out):
    """All panels, depth first, rows included (collapsed rows nest theirs)."""
    for p in panels or []:
        out.append(p)
        walk_panels(p.get("panels"), out)
    return out


def variable_values(dashboard):
    """Plausible substitutes for the dashboard's own variables."""
    values = {}
    for v in dashboard.get("templating", {}).get("list", []):
        name = v.get("name")
        if not name:
            problem("a template variable has no name")
            continue
        if v.get("type") == "interval":
            values[name] = "1m"
            continue
        current = (v.get("current") or {}).get("value")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else None
        if isinstance(current, str) and current and not current.startswith("$"):
            values[name] = current
        else:
            # Multi-value and "All" variables go into regex matchers.
            values[name] = v.get("allValue") or ".*"
    return values


def substitute(expr, values, where):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        problem(f"{where}: uses ${name}, which the dashboard does not define")
        return "undefined"

    return VAR_RE.sub(repl, expr)


def norm(expr):
    return re.sub(r"\s+", " ", expr)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    promtool, path = sys.argv[1], sys.argv[2]
    if not (os.path.isfile(promtool) and os.access(promtool, os.X_OK)):
        print(f"FAIL: promtool not found ({promtool}); install Debian's prometheus package "
              "(scripts/install-deps.sh)")
        return 1

    with open(path) as f:
        dashboard = json.load(f)

    # ---- structure ----------------------------------------------------------
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problem(f"schemaVersion {dashboard.get('schemaVersion')!r}: want >= 36")
    for key in ("uid", "title"):
        if not dashboard.get(key):
            problem(f"dashboard has no {key}")
    if dashboard.get("id") is not None:
        problem("dashboard id must be null (Grafana assigns it on provisioning)")

    variables = dashboard.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("name") == "datasource"]
    if not ds_vars or ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
        problem("no template variable 'datasource' of type datasource with query 'prometheus'")
    values = variable_values(dashboard)

    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    panels = walk_panels(dashboard.get("panels"), [])
    if dashboard.get("rows"):
        problem("old-style top-level 'rows': use row panels (schemaVersion >= 16)")
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        problem(f"panel ids must be present and unique: {ids}")

    exprs = []  # (where, raw expr, panel)
    for p in panels:
        title = p.get("title", "?")
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
            problem(f"panel '{title}': gridPos needs integer x, y, w, h")
        elif gp["x"] < 0 or gp["x"] + gp["w"] > 24:
            problem(f"panel '{title}': gridPos outside the 24 columns")
        if p.get("type") == "row":
            if p.get("targets"):
                problem(f"row '{title}' has targets")
            continue
        if p.get("datasource") != want_ds:
            problem(f"panel '{title}': datasource {p.get('datasource')!r}, want {want_ds}")
        targets = p.get("targets") or []
        if not targets:
            problem(f"panel '{title}' has no targets")
        refids = [t.get("refId") for t in targets]
        if len(set(refids)) != len(refids) or None in refids:
            problem(f"panel '{title}': refIds must be present and unique: {refids}")
        for t in targets:
            where = f"panel '{title}' target {t.get('refId')}"
            if t.get("datasource") != want_ds:
                problem(f"{where}: datasource {t.get('datasource')!r}, want {want_ds}")
            expr = t.get("expr", "")
            if not expr.strip():
                problem(f"{where}: empty expr")
                continue
            exprs.append((where, expr, p))
            # Range windows follow the scrape interval: $__rate_interval.
            for window in re.findall(r"\[([^\]]*)\]", expr):
                if not window.startswith("$"):
                    problem(f"{where}: range [{window}] is hard-coded; use [$__rate_interval]")

    for v in variables:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("datasource") != want_ds:
            problem(f"variable '{v.get('name')}': datasource {v.get('datasource')!r}, want {want_ds}")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
        m2 = re.fullmatch(r"\s*query_result\((.*)\)\s*", q or "")
        if m:
            exprs.append((f"variable '{v.get('name')}'", m.group(1), None))
        elif m2:
            exprs.append((f"variable '{v.get('name')}'", m2.group(1), None))
        else:
            problem(f"variable '{v.get('name')}': query {q!r} is not label_values(selector, label)")

    # ---- required panels, by what they query --------------------------------
    def panels_with(pred):
        return [p for p in panels if p.get("type") != "row" and pred(p)]

    def texts(p):
        return [norm(t.get("expr", "")) for t in p.get("targets") or []]

    def has(*needles):
        return lambda p: all(any(n in e for e in texts(p)) for n in needles)

    required = {
        "throughput by model and code":
            lambda p: any(re.search(r"sum by \(model, code\) \(rate\(clipserve_requests_total\{", e)
                          for e in texts(p)),
        "p50/p95/p99 latency from clipserve_request_duration_seconds_bucket (one panel)":
            lambda p: all(any(re.search(r"histogram_quantile\(" + q + r", .*clipserve_request_duration_seconds_bucket", e)
                              for e in texts(p)) for q in (r"0\.50?", r"0\.95", r"0\.99")),
        "queue time vs compute time per request (one panel, _sum/_count)":
            has("clipserve_queue_duration_seconds_sum", "clipserve_queue_duration_seconds_count",
                "clipserve_compute_duration_seconds_sum", "clipserve_compute_duration_seconds_count"),
        "batch-size heatmap":
            lambda p: p.get("type") == "heatmap"
            and (p.get("options") or {}).get("calculate") is False
            and any("clipserve_batch_size_bucket" in norm(t.get("expr", ""))
                    and t.get("format") == "heatmap" and t.get("legendFormat") == "{{le}}"
                    for t in p.get("targets") or []),
        "queue depth": has("clipserve_queue_depth"),
        "in-flight requests": has("clipserve_inflight_requests"),
        "GPU utilisation": has("clipserve_gpu_utilization_ratio"),
        "GPU memory used and total (one panel)":
            has("clipserve_gpu_memory_used_bytes", "clipserve_gpu_memory_total_bytes"),
        "GPU power": has("clipserve_gpu_power_watts"),
        "process resident memory": has("process_resident_memory_bytes"),
        "process CPU": lambda p: any("rate(process_cpu_seconds_total" in e for e in texts(p)),
    }
    units = {
        "p50/p95/p99 latency from clipserve_request_duration_seconds_bucket (one panel)": "s",
        "queue time vs compute time per request (one panel, _sum/_count)": "s",
        "throughput by model and code": "reqps",
        "GPU utilisation": "percentunit",
        "GPU memory used and total (one panel)": "bytes",
        "GPU power": "watt",
        "process resident memory": "bytes",
    }
    for what, pred in required.items():
        found = panels_with(pred)
        if not found:
            problem(f"no panel shows {what}")
            continue
        if what in units:
            got = ((found[0].get("fieldConfig") or {}).get("defaults") or {}).get("unit")
            if got != units[what]:
                problem(f"panel '{found[0].get('title')}' ({what}): unit {got!r}, want {units[what]!r}")

    # ---- every expression parses --------------------------------------------
    rules = []
    index = []
    for where, expr, _ in exprs:
        rules.append({"record": f"dashboard:expr_{len(rules)}", "expr": substitute(expr, values, where)})
        index.append(where)
    with tempfile.TemporaryDirectory(prefix="clipserve-dashboard-") as tmp:
        rules_path = os.path.join(tmp, "dashboard_rules.yml")
        with open(rules_path, "w") as f:
            # JSON is YAML.
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=2)
        run = subprocess.run([promtool, "check", "rules", rules_path],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if run.returncode != 0:
            problem("promtool check rules rejected dashboard expressions:\n" + run.stdout)
            for i, where in enumerate(index):
                if f"\"dashboard:expr_{i}\"" in run.stdout:
                    problem(f"  dashboard:expr_{i} is {where}: {rules[i]['expr']}")
        elif f"SUCCESS: {len(rules)} rules found" not in run.stdout:
            problem(f"promtool did not check all {len(rules)} expressions:\n{run.stdout}")

    print(f"{len(exprs)} expressions in {len([p for p in panels if p.get('type') != 'row'])} panels "
          f"and {len(variables)} variables")
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
