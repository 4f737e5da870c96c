#!/usr/bin/python3
"""Checks deploy/grafana/provisioning and its consistency with the rest.

  check_provisioning.py SOURCE_DIR

- datasources/prometheus.yml: apiVersion 1, exactly one default data source
  of type prometheus with an http(s) URL, and jsonData.timeInterval equal to
  the clipserve job's scrape_interval in deploy/prometheus.yml (Grafana's
  $__rate_interval is built from it).
- dashboards/clipserve.yml: apiVersion 1, a file provider with an absolute
  options.path.
- deploy/prometheus.yml: a job "clipserve" scraping localhost:8002 (the
  default --metrics-port), /metrics, and rule_files naming alerts.yml next to
  it.
- The dashboard's data source variable asks for the provisioned type.

Exit status 0 when all holds, 1 otherwise (PyYAML missing included).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_doc import report  # noqa: E402

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML missing; install Debian's python3-yaml (scripts/install-deps.sh)")

problems = []


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    deploy = os.path.join(sys.argv[1], "deploy")

    prom = load(os.path.join(deploy, "prometheus.yml"))
    jobs = [j for j in prom.get("scrape_configs", []) if j.get("job_name") == "clipserve"]
    scrape_interval = None
    if len(jobs) != 1:
        problems.append("deploy/prometheus.yml: want exactly one scrape job 'clipserve'")
    else:
        job = jobs[0]
        scrape_interval = job.get("scrape_interval") or prom.get("global", {}).get("scrape_interval")
        if scrape_interval not in ("5s", "15s"):
            problems.append(f"clipserve scrape_interval {scrape_interval!r}: want 5s or 15s")
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        if "localhost:8002" not in targets:
            problems.append(f"clipserve job targets {targets}: want localhost:8002")
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append("clipserve job metrics_path must be /metrics")
    rule_files = prom.get("rule_files") or []
    if not any(os.path.normpath(os.path.join(deploy, r)) == os.path.join(os.path.normpath(deploy), "alerts.yml")
               for r in rule_files):
        problems.append(f"rule_files {rule_files}: want alerts.yml (relative to deploy/)")

    ds = load(os.path.join(deploy, "grafana/provisioning/datasources/prometheus.yml"))
    if ds.get("apiVersion") != 1:
        problems.append("datasources: apiVersion must be 1")
    sources = ds.get("datasources") or []
    proms = [s for s in sources if s.get("type") == "prometheus"]
    if len(proms) != 1:
        problems.append(f"datasources: want one prometheus data source, got {len(proms)}")
    else:
        s = proms[0]
        if not str(s.get("url", "")).startswith(("http://", "https://")):
            problems.append(f"datasource url {s.get('url')!r} is not http(s)")
        if s.get("access", "proxy") != "proxy":
            problems.append("datasource access must be proxy (the browser cannot reach Prometheus in compose)")
        if not s.get("isDefault"):
            problems.append("the prometheus data source must be the default (the dashboard's variable picks it)")
        if not s.get("name") or not s.get("uid"):
            problems.append("datasource needs name and uid")
        ti = (s.get("jsonData") or {}).get("timeInterval")
        if scrape_interval and ti != scrape_interval:
            problems.append(f"datasource jsonData.timeInterval {ti!r} != clipserve scrape_interval {scrape_interval!r}")
    if sum(1 for s in sources if s.get("isDefault")) > 1:
        problems.append("more than one default data source")

    dp = load(os.path.join(deploy, "grafana/provisioning/dashboards/clipserve.yml"))
    if dp.get("apiVersion") != 1:
        problems.append("dashboards: apiVersion must be 1")
    providers = dp.get("providers") or []
    if len(providers) != 1:
        problems.append(f"dashboards: want one provider, got {len(providers)}")
    else:
        p = providers[0]
        if p.get("type") != "file":
            problems.append("dashboard provider type must be file")
        path = (p.get("options") or {}).get("path", "")
        if not path.startswith("/"):
            problems.append(f"dashboard provider options.path {path!r} must be absolute (in the container)")
        if not p.get("name"):
            problems.append("dashboard provider needs a name")

    with open(os.path.join(deploy, "grafana/dashboards/clipserve.json")) as f:
        dash = json.load(f)
    var = [v for v in dash.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    if not var or var[0].get("query") != "prometheus":
        problems.append("dashboard has no datasource variable of type prometheus")

    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
