#!/usr/bin/python3
"""Checks deploy/docker-compose.yml without a Docker engine.

  check_compose.py SOURCE_DIR [PROMTOOL]

- The file parses (YAML), has the services clipserve (CPU, default),
  clipserve-gpu (profile gpu, answering to the name clipserve), prometheus
  and grafana, and names only declared volumes.
- Every build context and Dockerfile, and every bind-mounted host path,
  exists in the repository.
- Prometheus: its configuration (deploy/compose/prometheus.yml) is
  deploy/prometheus.yml with the one target changed to the clipserve service
  and its metrics port; alerts.yml is mounted beside it; `promtool check
  config` accepts it (rules included). PROMTOOL defaults to the one on PATH.
- Grafana: the provisioning is mounted at /etc/grafana/provisioning, the
  dashboards where the dashboard provider reads them; the data source URL
  names the prometheus service and its port; the home dashboard exists.

Exit status 0 when all holds, 1 otherwise (PyYAML or promtool missing
included).
"""
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML missing; install Debian's python3-yaml (scripts/install-deps.sh)")

problems = []


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def flag_value(args, flag, default=None):
    args = list(args or [])
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return str(args[i + 1])
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def mounts(service):
    """[(source, target, mode)] of a service's volumes (short and long syntax)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source"), v.get("target"), "ro" if v.get("read_only") else "rw", v.get("type")))
            continue
        parts = str(v).split(":")
        src, tgt = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        mode = parts[2] if len(parts) > 2 else "rw"
        kind = "bind" if src and (src.startswith((".", "/", "~"))) else ("volume" if src else "anonymous")
        out.append((src, tgt, mode, kind))
    return out


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 64
    repo = os.path.abspath(sys.argv[1])
    promtool = sys.argv[2] if len(sys.argv) == 3 else shutil.which("promtool")
    deploy = os.path.join(repo, "deploy")
    compose_path = os.path.join(deploy, "docker-compose.yml")
    try:
        compose = load(compose_path)
    except (OSError, yaml.YAMLError) as e:
        print(f"FAIL deploy/docker-compose.yml does not parse: {e}")
        return 1
    services = compose.get("services") or {}
    for name in ("clipserve", "clipserve-gpu", "prometheus", "grafana"):
        if name not in services:
            problems.append(f"service {name} missing")
    if problems:
        return report()
    declared = set((compose.get("volumes") or {}).keys())

    # Paths: build contexts, Dockerfiles, bind mounts; named volumes declared.
    targets = {}
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            ctx = os.path.normpath(os.path.join(deploy, context))
            if not os.path.isdir(ctx):
                problems.append(f"{name}: build context {context} does not exist")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not os.path.isfile(os.path.join(ctx, dockerfile)):
                problems.append(f"{name}: Dockerfile {dockerfile} (in {context}) does not exist")
        targets[name] = {}
        for src, tgt, mode, kind in mounts(svc):
            targets[name][tgt] = src
            if kind == "bind":
                host = os.path.normpath(os.path.join(deploy, os.path.expanduser(src)))
                if not os.path.exists(host):
                    problems.append(f"{name}: mounted path {src} ({os.path.relpath(host, repo)}) does not exist")
                elif "ro" not in mode.split(","):
                    problems.append(f"{name}: mount {src} should be read-only (:ro)")
            elif kind == "volume" and src not in declared:
                problems.append(f"{name}: volume {src} is not declared under volumes:")

    cpu, gpu = services["clipserve"], services["clipserve-gpu"]
    if (cpu.get("build") or {}).get("dockerfile") != "deploy/Dockerfile.cpu":
        problems.append("clipserve must build deploy/Dockerfile.cpu")
    if cpu.get("profiles"):
        problems.append("clipserve (CPU) must run by default: no profiles")
    if (gpu.get("build") or {}).get("dockerfile") != "deploy/Dockerfile.gpu":
        problems.append("clipserve-gpu must build deploy/Dockerfile.gpu")
    if "gpu" not in (gpu.get("profiles") or []):
        problems.append("clipserve-gpu must be in profile gpu")
    aliases = (((gpu.get("networks") or {}).get("default") or {}).get("aliases") or [])
    if "clipserve" not in aliases:
        problems.append("clipserve-gpu needs the network alias clipserve (Prometheus's target)")
    devices = (((gpu.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    if not any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) for d in devices):
        problems.append("clipserve-gpu must reserve NVIDIA GPUs")
    metrics_port = None
    for name, svc in (("clipserve", cpu), ("clipserve-gpu", gpu)):
        mp = flag_value(svc.get("command"), "--metrics-port", "8002")
        gp = flag_value(svc.get("command"), "--grpc-port", "8001")
        metrics_port = metrics_port or mp
        if mp != metrics_port:
            problems.append("both variants must serve metrics on the same port")
        published = {str(p).split(":")[-1] for p in svc.get("ports") or []}
        for port in (gp, mp):
            if port not in published:
                problems.append(f"{name}: port {port} is not published")

    check_prometheus(services["prometheus"], targets["prometheus"], deploy, metrics_port, promtool)
    check_grafana(services["grafana"], targets["grafana"], deploy, services)
    return report()


def check_prometheus(svc, mounted, deploy, metrics_port, promtool):
    config_in_ctr = flag_value(svc.get("command"), "--config.file", "/etc/prometheus/prometheus.yml")
    src = mounted.get(config_in_ctr)
    if not src:
        problems.append(f"prometheus: nothing mounted at {config_in_ctr} (--config.file)")
        return
    config_path = os.path.normpath(os.path.join(deploy, src))
    if not os.path.exists(config_path):
        return  # reported above
    compose_cfg = load(config_path)
    reference = load(os.path.join(deploy, "prometheus.yml"))
    want_target = f"clipserve:{metrics_port}"
    # Equal to deploy/prometheus.yml once the target is changed back.
    jobs = [j for j in compose_cfg.get("scrape_configs") or [] if j.get("job_name") == "clipserve"]
    targets = [t for j in jobs for sc in j.get("static_configs") or [] for t in sc.get("targets") or []]
    if targets != [want_target]:
        problems.append(f"{src}: clipserve targets {targets}, want [{want_target!r}]")
    normalised = copy.deepcopy(compose_cfg)
    for j in normalised.get("scrape_configs") or []:
        for sc in j.get("static_configs") or []:
            sc["targets"] = ["localhost:8002" if t == want_target else t for t in sc.get("targets") or []]
    if normalised != reference:
        problems.append(f"{src} differs from deploy/prometheus.yml in more than the target "
                        f"(update it to match): {diff(normalised, reference)}")
    # Rule files resolve next to the configuration inside the container.
    cfg_dir = os.path.dirname(config_in_ctr)
    for rule in compose_cfg.get("rule_files") or []:
        in_ctr = os.path.normpath(os.path.join(cfg_dir, rule))
        host = mounted.get(in_ctr)
        if not host:
            problems.append(f"prometheus: rule file {rule} ({in_ctr}) is not mounted")
        elif os.path.normpath(os.path.join(deploy, host)) != os.path.join(deploy, "alerts.yml"):
            problems.append(f"prometheus: {in_ctr} should be deploy/alerts.yml, is {host}")
    if not os.path.exists(os.path.join(deploy, "alerts.yml")):
        return  # reported above
    if not (promtool and os.access(promtool, os.X_OK)):
        problems.append(f"promtool not found ({promtool}): install Debian's prometheus package "
                        "(scripts/install-deps.sh)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(config_path, os.path.join(tmp, "prometheus.yml"))
        shutil.copy(os.path.join(deploy, "alerts.yml"), os.path.join(tmp, "alerts.yml"))
        r = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp,
                           capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"promtool check config {src}: {r.stdout}{r.stderr}")
    else:
        print(f"promtool check config {src}: OK")


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return diff(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return diff(x, y, f"{path}[{i}]")
    return f"{path or '.'}: {a!r} != {b!r}"


def check_grafana(svc, mounted, deploy, services):
    prov_src = mounted.get("/etc/grafana/provisioning")
    if not prov_src:
        problems.append("grafana: deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning")
        return
    prov = os.path.normpath(os.path.join(deploy, prov_src))
    if prov != os.path.join(deploy, "grafana", "provisioning"):
        problems.append(f"grafana: /etc/grafana/provisioning should be deploy/grafana/provisioning, is {prov_src}")
    dash_cfg = load(os.path.join(deploy, "grafana/provisioning/dashboards/clipserve.yml"))
    for p in dash_cfg.get("providers") or []:
        path = (p.get("options") or {}).get("path")
        src = mounted.get(path)
        if not src:
            problems.append(f"grafana: nothing mounted at the dashboard provider's path {path}")
        elif os.path.normpath(os.path.join(deploy, src)) != os.path.join(deploy, "grafana", "dashboards"):
            problems.append(f"grafana: {path} should be deploy/grafana/dashboards, is {src}")
    ds_cfg = load(os.path.join(deploy, "grafana/provisioning/datasources/prometheus.yml"))
    for ds in ds_cfg.get("datasources") or []:
        if ds.get("type") != "prometheus":
            continue
        url = urlparse(ds.get("url", ""))
        if url.hostname not in services:
            problems.append(f"grafana data source {ds.get('url')}: {url.hostname} is not a compose service")
        prom = services.get(url.hostname) or {}
        listen = flag_value(prom.get("command"), "--web.listen-address", "0.0.0.0:9090")
        if str(url.port or 80) != listen.rsplit(":", 1)[-1]:
            problems.append(f"grafana data source {ds.get('url')}: Prometheus listens on {listen}")
    home = (svc.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        for tgt, src in mounted.items():
            if tgt and src and home.startswith(tgt.rstrip("/") + "/"):
                host = os.path.join(deploy, src, os.path.relpath(home, tgt))
                if not os.path.isfile(host):
                    problems.append(f"grafana: home dashboard {home} ({os.path.relpath(host, deploy)}) does not exist")
                break
        else:
            problems.append(f"grafana: home dashboard {home} is in no mounted folder")
    if "prometheus" not in (svc.get("depends_on") or []):
        problems.append("grafana should depend on prometheus")


def report():
    if problems:
        for p in problems:
            print("FAIL", p)
        return 1
    print("docker-compose.yml: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
