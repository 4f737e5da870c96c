"""Helpers shared by the live deploy tests (live_metrics_test.py,
adapter_query_test.py): child processes that die with the test, bounded
waits, the real clipserve on loopback, and a real Prometheus with its HTTP
API.

Every wait has a limit; every child gets SIGKILL should the test die
(PR_SET_PDEATHSIG) and is stopped by Children.stop_all() otherwise.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class Failure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


CHECKS = [0]  # checks passed so far in this process


def check(cond, msg):
    if not cond:
        raise Failure(msg)
    CHECKS[0] += 1
    log(f"ok: {msg}")


# ---- processes --------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Children:
    def __init__(self):
        self.procs = []  # (name, Popen, log path)

    def start(self, name, cmd, log_path):
        log(f"start {name}: {' '.join(cmd)}")
        out = open(log_path, "wb")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
        out.close()
        self.procs.append((name, p, log_path))
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    def stop_all(self):
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                log(f"stop {name} (pid {p.pid})")
                self.stop(p)

    def dump_logs(self, lines=40):
        for name, _, path in self.procs:
            try:
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            print(f"---- last {len(tail)} lines of {name} ({path}) ----")
            sys.stdout.write("".join(tail))


def install_signal_handlers():
    """SIGTERM/SIGINT/SIGHUP unwind through the test's finally: (cleanup)."""
    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout, interval=0.25):
    """Polls fn() until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


# ---- clipserve --------------------------------------------------------------

def wait_for_ports(proc, name, log_path, timeout=180):
    """Waits for a clipserve started with --metrics-port (and perhaps
    --grpc-port) 0 to log the ports it got. Returns (grpc_port,
    metrics_port)."""
    def ports():
        if proc.poll() is not None:
            raise Failure(f"{name} exited with {proc.returncode} while starting")
        with open(log_path, errors="replace") as f:
            text = f.read()
        g = re.search(r"serving gRPC on port (\d+)", text)
        m = re.search(r"serving metrics on port (\d+)", text)
        return (int(g.group(1)), int(m.group(1))) if g and m else None

    return wait_for(f"{name} to log its gRPC and metrics ports", ports, timeout)


def start_clipserve(children, server, repo, log_path, name="clipserve", timeout=180,
                    extra=(), host="127.0.0.1"):
    """Starts clipserve on `host` with --grpc-port 0 --metrics-port 0 (and
    the flags in `extra`) and reads the ports it got from its log. Returns
    (Popen, grpc_port, metrics_port). repo None: no --model-repository (the
    built-in model)."""
    repo_args = [] if repo is None else ["--model-repository", repo]
    proc = children.start(name, [server] + repo_args + [
        "--grpc-address", host, "--grpc-port", "0", "--metrics-port", "0"] + list(extra),
        log_path)
    grpc_port, metrics_port = wait_for_ports(proc, name, log_path, timeout)
    log(f"{name}: gRPC {host}:{grpc_port}, metrics http://{host}:{metrics_port}/metrics")
    return proc, grpc_port, metrics_port


# ---- Prometheus -------------------------------------------------------------

class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            status, body = http_get(url, timeout=10)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            raise Failure(f"GET {url}: HTTP {e.code}: {body}")
        data = json.loads(body)
        if data.get("status") != "success":
            raise Failure(f"GET {url}: {data}")
        return data["data"]

    def query(self, q, **params):
        """Instant vector result: [(labels, float value)]."""
        data = self.api("query", query=q, **params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def one(self, q):
        r = self.query(q)
        if len(r) != 1:
            raise Failure(f"{q}: want one series, got {r}")
        return r[0][1]

    def series(self, match, start=None):
        """/api/v1/series: the label sets (with __name__) matching `match`."""
        params = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        return self.api("series", **params)

    def active_alerts(self):
        return {(a["labels"]["alertname"], a["state"]) for a in self.api("alerts")["alerts"]}


def start_prometheus(children, prometheus, config, tmp, timeout=60):
    """Writes `config` (a dict) and starts Prometheus on a free loopback port
    with its data under tmp; returns (Popen, Prometheus) once it is ready."""
    port = free_port()
    config_path = os.path.join(tmp, "prometheus.yml")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)  # JSON is YAML
    proc = children.start("prometheus", [
        prometheus, f"--config.file={config_path}",
        f"--storage.tsdb.path={os.path.join(tmp, 'prometheus-data')}",
        f"--web.listen-address=127.0.0.1:{port}"], os.path.join(tmp, "prometheus.log"))

    def ready():
        if proc.poll() is not None:
            raise Failure(f"prometheus exited with {proc.returncode}")
        return http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200

    wait_for("Prometheus to be ready", ready, timeout)
    return proc, Prometheus(port)


def finish(children, tmp, failed, keep):
    """Stops every child, shows their logs on failure, and removes `tmp`
    (kept with `keep`, or on failure with CLIPSERVE_KEEP_TMP set)."""
    children.stop_all()
    if failed:
        children.dump_logs()
    if keep or (failed and os.environ.get("CLIPSERVE_KEEP_TMP")):
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
