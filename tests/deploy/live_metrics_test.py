#!/usr/bin/python3
"""End to end: the real server's /metrics, scraped by a real Prometheus that
loads deploy/alerts.yml.

  live_metrics_test.py --server CLIPSERVE --client CLIPSERVE_CLIENT
      --bench-repo CLIPSERVE_BENCH_REPO --source-dir DIR
      [--promtool PATH] [--prometheus PATH]

1. Writes the benchmark model repository (tiny-b8, tiny-b1, ...) and starts
   clipserve on 127.0.0.1 with --grpc-port 0 --metrics-port 0 (it logs the
   ports it got).
2. Sends a known mix with clipserve-client, from .npy files so that no
   metadata call precedes a Classify: 5 good clips to tiny-b8 at once, 2 to a
   model that does not exist, 1 with 3 frames instead of 16.
3. Scrapes /metrics and asserts the counts, the histograms (buckets, _count,
   _sum, batch sizes adding up to 5 clips), the gauges, that every
   clipserve_* and process_* family is the one docs/metrics.md documents
   (type and labels), and that `promtool check metrics` reports nothing.
4. Starts Prometheus (1 s scrapes, deploy/alerts.yml loaded) and waits until
   sum(clipserve_requests_total{code="OK"}) is 5; sends 3 more good clips and
   waits for 8; then every recording and alerting rule must evaluate without
   error, the recorded p99, queue and compute time, batch size and error
   ratio must have sensible values, every dashboard expression must run
   without error (and return data, GPU panels aside), and no availability or
   error alert may be active.
5. SIGTERM to the server: it must drain and exit 0, and ClipserveTargetDown
   and ClipserveUnavailable must turn active.

Everything it starts is stopped at the end, also on failure or a signal
(children also get SIGKILL should this script die). Loopback only; every wait
is bounded. Exit 0: pass, 1: fail (promtool or prometheus missing included:
nothing is skipped).
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import check_dashboard  # noqa: E402
from live_util import (Children, Failure, check, die_with_parent, finish, http_get,  # noqa: E402
                       install_signal_handlers, log, start_clipserve, start_prometheus, wait_for)
from metrics_doc import documented_metrics, duration_buckets  # noqa: E402

OK_CLIPS = 5
UNKNOWN_CLIPS = 2
BAD_SHAPE_CLIPS = 1
MORE_OK_CLIPS = 3
UNKNOWN_MODEL = "no-such-model"


# ---- exposition format ------------------------------------------------------

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text):
    """({family: type}, {family: help}, [(name, {labels}, value)])"""
    types, helps, samples = {}, {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            continue
        if line.startswith("# HELP "):
            parts = line.split(None, 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise Failure(f"unparsable exposition line: {line!r}")
        labels = {}
        if m.group(2):
            pos = 0
            body = m.group(2)
            while pos < len(body):
                lm = LABEL_RE.match(body, pos)
                if not lm:
                    raise Failure(f"unparsable labels in {line!r}")
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return types, helps, samples


class Scrape:
    def __init__(self, text):
        self.text = text
        self.types, self.helps, self.samples = parse_exposition(text)

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]

    def value(self, name, **labels):
        found = self.find(name, **labels)
        if len(found) != 1:
            raise Failure(f"want one {name}{labels}, found {len(found)}: {found}")
        return found[0][1]

    def total(self, name, **labels):
        return sum(v for _, v in self.find(name, **labels))

    def buckets(self, name, **labels):
        """[(le, cumulative count)] sorted by le, for one series."""
        out = []
        for l, v in self.find(name + "_bucket", **labels):
            out.append((float(l["le"]), v))
        return sorted(out)


# ---- the test ---------------------------------------------------------------

def write_npy(path, shape, seed):
    """A uint8 .npy (format 1.0) of random bytes; clipserve-client reads it."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    n = 1
    for d in shape:
        n *= d
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        f.write(random.Random(seed).randbytes(n))


def run_clients(client, grpc_addr, model, npy, count, want_rc):
    """Runs `count` clients at once; each must exit with want_rc."""
    procs = [subprocess.Popen([client, "--server", grpc_addr, "--model", model, npy],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
             for _ in range(count)]
    for p in procs:
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise Failure(f"clipserve-client --model {model} did not finish in 120 s")
        if p.returncode != want_rc:
            raise Failure(f"clipserve-client --model {model} {os.path.basename(npy)}: exit "
                          f"{p.returncode}, want {want_rc}:\n{out.decode(errors='replace')}")
    log(f"sent {count} x {os.path.basename(npy)} to {model}: exit {want_rc} each")


def scrape_metrics(url):
    status, text = http_get(url)
    if status != 200:
        raise Failure(f"GET {url}: HTTP {status}")
    return Scrape(text)


def check_scrape(s, source, models):
    """The counts after the first mix, and the contract."""
    docs = documented_metrics(os.path.join(source, "docs/metrics.md"))
    buckets = duration_buckets(os.path.join(source, "docs/metrics.md"))

    # Requests by code.
    check(s.value("clipserve_requests_total", model="tiny-b8", version="1", code="OK") == OK_CLIPS,
          f'clipserve_requests_total{{model="tiny-b8",version="1",code="OK"}} == {OK_CLIPS}')
    check(s.value("clipserve_requests_total", model="unknown", version="", code="NOT_FOUND") == UNKNOWN_CLIPS,
          f'clipserve_requests_total{{model="unknown",version="",code="NOT_FOUND"}} == {UNKNOWN_CLIPS}')
    check(s.value("clipserve_requests_total", model="tiny-b8", version="1", code="INVALID_ARGUMENT")
          == BAD_SHAPE_CLIPS,
          f'clipserve_requests_total{{model="tiny-b8",code="INVALID_ARGUMENT"}} == {BAD_SHAPE_CLIPS}')
    all_requests = OK_CLIPS + UNKNOWN_CLIPS + BAD_SHAPE_CLIPS
    check(s.total("clipserve_requests_total") == all_requests,
          f"sum(clipserve_requests_total) == {all_requests} (no other series counted anything)")
    check(not s.find("clipserve_requests_total", model=UNKNOWN_MODEL),
          f"the unknown model's name ({UNKNOWN_MODEL}) is not a label value")

    # Request duration: every status.
    for model, version, n in (("tiny-b8", "1", OK_CLIPS + BAD_SHAPE_CLIPS), ("unknown", "", UNKNOWN_CLIPS)):
        check(s.value("clipserve_request_duration_seconds_count", model=model, version=version) == n,
              f"clipserve_request_duration_seconds_count{{model={model!r}}} == {n}")
    check(s.total("clipserve_request_duration_seconds_count") == all_requests,
          f"sum(clipserve_request_duration_seconds_count) == {all_requests}")
    check(s.value("clipserve_request_duration_seconds_sum", model="tiny-b8", version="1") > 0,
          "clipserve_request_duration_seconds_sum{tiny-b8} > 0")

    # Queue and compute: successful requests only.
    for h in ("clipserve_queue_duration_seconds", "clipserve_compute_duration_seconds"):
        check(s.value(h + "_count", model="tiny-b8", version="1") == OK_CLIPS,
              f"{h}_count{{tiny-b8}} == {OK_CLIPS} (the good clips)")
    check(s.value("clipserve_compute_duration_seconds_sum", model="tiny-b8", version="1") > 0,
          "clipserve_compute_duration_seconds_sum{tiny-b8} > 0")
    check(s.value("clipserve_queue_duration_seconds_sum", model="tiny-b8", version="1") >= 0,
          "clipserve_queue_duration_seconds_sum{tiny-b8} >= 0")
    check(s.value("clipserve_decode_duration_seconds_count", model="tiny-b8", version="1") == 0,
          "clipserve_decode_duration_seconds_count{tiny-b8} == 0 (no encoded video sent)")

    # Every duration histogram: the documented buckets, cumulative, +Inf == _count.
    for h in ("clipserve_request_duration_seconds", "clipserve_queue_duration_seconds",
              "clipserve_compute_duration_seconds", "clipserve_decode_duration_seconds"):
        series = {(l["model"], l["version"]) for l, _ in s.find(h + "_count")}
        check(series, f"{h} has series")
        for model, version in sorted(series):
            b = s.buckets(h, model=model, version=version)
            les = [le for le, _ in b]
            if les != buckets + [math.inf]:
                raise Failure(f"{h}{{{model}}} buckets {les}, want {buckets} and +Inf (docs/metrics.md)")
            counts = [c for _, c in b]
            if counts != sorted(counts):
                raise Failure(f"{h}{{{model}}} buckets are not cumulative: {b}")
            if counts[-1] != s.value(h + "_count", model=model, version=version):
                raise Failure(f"{h}{{{model}}}: +Inf bucket {counts[-1]} != _count")
        log(f"ok: {h}: documented buckets, cumulative, +Inf == _count for {len(series)} series")

    # Batches: 5 clips in 1..5 batches, buckets 1..max_batch_size.
    bs_count = s.value("clipserve_batch_size_count", model="tiny-b8", version="1")
    check(s.value("clipserve_batch_size_sum", model="tiny-b8", version="1") == OK_CLIPS,
          f"clipserve_batch_size_sum{{tiny-b8}} == {OK_CLIPS} (every good clip in exactly one batch)")
    check(1 <= bs_count <= OK_CLIPS, f"1 <= clipserve_batch_size_count{{tiny-b8}} ({bs_count:g}) <= {OK_CLIPS}")
    check(s.value("clipserve_batch_executions_total", model="tiny-b8", version="1") == bs_count,
          "clipserve_batch_executions_total{tiny-b8} == clipserve_batch_size_count{tiny-b8}")
    b = s.buckets("clipserve_batch_size", model="tiny-b8", version="1")
    check([le for le, _ in b] == [1, 2, 3, 4, 5, 6, 7, 8, math.inf],
          "clipserve_batch_size{tiny-b8} buckets are 1..8 and +Inf (max_batch_size 8)")
    check(b[-1][1] == bs_count and b[OK_CLIPS - 1][1] == bs_count,
          f"every tiny-b8 batch held at most {OK_CLIPS} clips")
    check([le for le, _ in s.buckets("clipserve_batch_size", model="tiny-b1", version="1")] == [1, math.inf],
          "clipserve_batch_size{tiny-b1} buckets are 1 and +Inf (max_batch_size 1)")
    check(s.value("clipserve_batch_size_count", model="tiny-b1", version="1") == 0,
          "tiny-b1 executed no batch")

    # Gauges: every served model ready, loaded, idle.
    for model in models:
        check(s.value("clipserve_model_ready", model=model, version="1") == 1,
              f"clipserve_model_ready{{model={model!r}}} == 1")
        check(s.value("clipserve_model_load_seconds", model=model, version="1") > 0,
              f"clipserve_model_load_seconds{{model={model!r}}} > 0")
        check(s.value("clipserve_queue_depth", model=model, version="1") == 0,
              f"clipserve_queue_depth{{model={model!r}}} == 0")
        check(s.value("clipserve_inflight_requests", model=model, version="1") == 0,
              f"clipserve_inflight_requests{{model={model!r}}} == 0")
    check(sorted(l["model"] for l, _ in s.find("clipserve_model_ready")) == sorted(models),
          f"clipserve_model_ready exactly for the served models {sorted(models)}")

    # Process.
    check(s.value("process_resident_memory_bytes") > 1e6, "process_resident_memory_bytes > 1 MB")
    check(s.value("process_cpu_seconds_total") > 0, "process_cpu_seconds_total > 0")
    start = s.value("process_start_time_seconds")
    check(time.time() - 600 < start <= time.time() + 5, "process_start_time_seconds is the last minutes")
    check(0 < s.value("process_open_fds") <= s.value("process_max_fds"), "0 < process_open_fds <= process_max_fds")

    # GPUs: only where NVML is present; then the values must make sense.
    gpus = s.find("clipserve_gpu_memory_total_bytes")
    if gpus:
        for l, total in gpus:
            used = s.value("clipserve_gpu_memory_used_bytes", gpu=l["gpu"])
            util = s.value("clipserve_gpu_utilization_ratio", gpu=l["gpu"])
            check(0 <= used <= total and 0 <= util <= 1 and s.value("clipserve_gpu_power_watts", gpu=l["gpu"]) >= 0,
                  f"GPU {l['gpu']}: used <= total, utilisation in [0, 1], power >= 0")
    else:
        log("no GPU series (no NVML here): GPU checks skipped")

    # The contract: every clipserve_*/process_* family is documented with its
    # type and labels; every documented non-GPU family is exported.
    undocumented = []
    for family, kind in sorted(s.types.items()):
        if not family.startswith(("clipserve_", "process_")):
            undocumented.append(family)
            continue
        if family not in docs:
            raise Failure(f"exported {family} ({kind}) is not in docs/metrics.md")
        if docs[family][0] != kind:
            raise Failure(f"{family} is a {kind}, docs/metrics.md says {docs[family][0]}")
        if not s.helps.get(family):
            raise Failure(f"{family} has no HELP")
    for n, labels, _ in s.samples:
        family = re.sub(r"_(bucket|sum|count)$", "", n) if s.types.get(re.sub(r"_(bucket|sum|count)$", "", n)) == "histogram" else n
        if family in docs:
            got = set(labels) - {"le"}
            if got != docs[family][1]:
                raise Failure(f"{n}{labels}: labels {sorted(got)}, docs/metrics.md says {sorted(docs[family][1])}")
    missing = [n for n in docs if not n.startswith("clipserve_gpu_") and n not in s.types]
    check(not missing, f"every documented non-GPU family is exported (missing: {missing})")
    log(f"ok: {len([f for f in s.types if f.startswith(('clipserve_', 'process_'))])} exported families "
        "match docs/metrics.md in type and labels")
    if undocumented:
        log(f"note: families outside the contract (not clipserve_*/process_*): {undocumented}")


def check_prometheus(prom, source, models, client, grpc_addr, ok_npy):
    # 1. The first mix arrives through a real scrape.
    q = 'sum(clipserve_requests_total{code="OK"})'
    wait_for(f"{q} == {OK_CLIPS}", lambda: (lambda r: r and r[0][1] == OK_CLIPS)(prom.query(q)), 60)
    check(prom.one(q) == OK_CLIPS, f"Prometheus: {q} == {OK_CLIPS}")
    check(prom.one('sum(clipserve_requests_total{code="NOT_FOUND",model="unknown"})') == UNKNOWN_CLIPS,
          f'Prometheus: NOT_FOUND for model="unknown" == {UNKNOWN_CLIPS}')
    check(prom.one('up{job="clipserve"}') == 1, 'Prometheus: up{job="clipserve"} == 1')

    # 2. More traffic, so that the 1m/5m rates behind the rules are not 0/0.
    run_clients(client, grpc_addr, "tiny-b8", ok_npy, MORE_OK_CLIPS, 0)
    total_ok = OK_CLIPS + MORE_OK_CLIPS
    wait_for(f"{q} == {total_ok}", lambda: (lambda r: r and r[0][1] == total_ok)(prom.query(q)), 60)
    check(prom.one(q) == total_ok, f"Prometheus: {q} == {total_ok}")

    # 3. Every rule of deploy/alerts.yml evaluates without error.
    def rules_evaluated():
        groups = prom.api("rules")["groups"]
        rules = [(g["name"], r) for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("health") == "ok" or r.get("lastError") for _, r in rules) else None

    rules = wait_for("every rule evaluated once", rules_evaluated, 30)
    bad = [(g, r["name"], r.get("health"), r.get("lastError")) for g, r in rules
           if r.get("health") != "ok" or r.get("lastError")]
    check(not bad, f"all {len(rules)} rules of deploy/alerts.yml evaluate without error {bad or ''}")
    groups = {g for g, _ in rules}
    check({"clipserve", "clipserve-recording"} <= groups, f"rule groups loaded: {sorted(groups)}")

    # 4. The recorded series have values, once the rules saw the new traffic.
    def finite(q):
        r = prom.query(q)
        return r if r and all(math.isfinite(v) for _, v in r) else None

    sel = '{job="clipserve",model="tiny-b8"}'
    queue = wait_for("clipserve:queue_seconds_per_request:rate1m",
                     lambda: finite(f"clipserve:queue_seconds_per_request:rate1m{sel}"), 30)
    check(len(queue) == 1 and 0 <= queue[0][1] < 30,
          f"clipserve:queue_seconds_per_request:rate1m{sel} = {queue[0][1]:.4f} s, in [0, 30)")
    p99 = wait_for("clipserve:request_duration_seconds:p99_rate5m",
                   lambda: finite(f"clipserve:request_duration_seconds:p99_rate5m{sel}"), 30)
    check(len(p99) == 1 and 0 < p99[0][1] <= 30,
          f"clipserve:request_duration_seconds:p99_rate5m{sel} = {p99[0][1]:.4f} s, in (0, 30]")
    p50 = wait_for("p50", lambda: finite(f"clipserve:request_duration_seconds:p50_rate5m{sel}"), 30)
    check(p50[0][1] <= p99[0][1], "recorded p50 <= p99")
    compute = wait_for("compute", lambda: finite(f"clipserve:compute_seconds_per_request:rate1m{sel}"), 30)
    check(compute[0][1] > 0, f"clipserve:compute_seconds_per_request:rate1m = {compute[0][1]:.4f} s > 0")
    batch = wait_for("batch", lambda: finite(f"clipserve:batch_size:mean_rate1m{sel}"), 30)
    # Not exactly in [1, 8]: so soon after the counters start, rate() caps its
    # extrapolation at each counter's own zero point, which differs for _sum
    # and _count, so the ratio can dip a little below 1 (0.94 seen).
    check(0.5 <= batch[0][1] <= 8, f"clipserve:batch_size:mean_rate1m = {batch[0][1]:.2f}, in [0.5, 8]")
    rate = wait_for("rate", lambda: finite('clipserve:requests:rate1m{job="clipserve",model="tiny-b8",code="OK"}'), 30)
    check(rate[0][1] > 0, "clipserve:requests:rate1m{tiny-b8, OK} > 0")
    errors = wait_for("errors", lambda: finite(f"clipserve:request_errors:ratio_rate5m{sel}"), 30)
    check(errors[0][1] == 0,
          "clipserve:request_errors:ratio_rate5m{tiny-b8} == 0 (INVALID_ARGUMENT is the client's fault)")
    check(not prom.query('clipserve:request_errors:ratio_rate5m{model="unknown"}'),
          'no error ratio for model="unknown" (it only got NOT_FOUND)')

    # 5. Every dashboard expression runs against the real series.
    with open(os.path.join(source, "deploy/grafana/dashboards/clipserve.json")) as f:
        dash = json.load(f)
    values = check_dashboard.variable_values(dash)
    panels = check_dashboard.walk_panels(dash.get("panels"), [])
    n = 0
    for p in panels:
        for t in p.get("targets") or []:
            where = f"panel '{p.get('title')}' {t.get('refId')}"
            expr = check_dashboard.substitute(t["expr"], values, where)
            try:
                result = prom.query(expr)
            except Failure as e:
                raise Failure(f"dashboard {where} does not evaluate: {e}")
            n += 1
            if not result and "clipserve_gpu_" not in expr:
                raise Failure(f"dashboard {where} returns no data: {expr}")
    if check_dashboard.problems:
        raise Failure(f"dashboard variables: {check_dashboard.problems}")
    log(f"ok: all {n} dashboard expressions evaluate against the live server (GPU panels may be empty)")
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            selector = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            label = selector.group(2)
            expr = check_dashboard.substitute(selector.group(1), values, v["name"])
            got = {lbl.get(label) for lbl, _ in prom.query(expr)}
            check(got and None not in got, f"dashboard variable ${v['name']} finds values: {sorted(got)}")

    # 6. Healthy server: no availability or error alert active.
    active = {a for a in prom.active_alerts()
              if a[0] in ("ClipserveTargetDown", "ClipserveUnavailable", "ClipserveNoReadyModel",
                          "ClipserveHighErrorRate")}
    check(not active, f"no availability/error alert pending or firing {sorted(active) or ''}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--bench-repo", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    for tool in (args.promtool, args.prometheus):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            print(f"FAIL: {tool} not found; install Debian's prometheus package "
                  "(scripts/install-deps.sh)")
            return 1
    source = os.path.abspath(args.source_dir)

    install_signal_handlers()

    tmp = tempfile.mkdtemp(prefix="clipserve-deploy-live-")
    children = Children()
    failed = True
    try:
        repo = os.path.join(tmp, "repo")
        subprocess.run([args.bench_repo, repo], check=True, timeout=300)
        models = sorted(d for d in os.listdir(repo) if os.path.isfile(os.path.join(repo, d, "config.pbtxt")))
        check({"tiny-b8", "tiny-b1"} <= set(models), f"model repository has tiny-b8 and tiny-b1: {models}")
        ok_npy = os.path.join(tmp, "ok.npy")
        bad_npy = os.path.join(tmp, "bad.npy")
        write_npy(ok_npy, (16, 112, 112, 3), 1)
        write_npy(bad_npy, (3, 112, 112, 3), 2)

        server, grpc_port, metrics_port = start_clipserve(
            children, args.server, repo, os.path.join(tmp, "clipserve.log"))
        grpc_addr = f"127.0.0.1:{grpc_port}"
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        first = wait_for("GET /metrics", lambda: scrape_metrics(metrics_url), 30)
        check(first.total("clipserve_requests_total") == 0, "no request counted before any was sent")

        run_clients(args.client, grpc_addr, "tiny-b8", ok_npy, OK_CLIPS, 0)
        run_clients(args.client, grpc_addr, UNKNOWN_MODEL, ok_npy, UNKNOWN_CLIPS, 5)  # NOT_FOUND
        run_clients(args.client, grpc_addr, "tiny-b8", bad_npy, BAD_SHAPE_CLIPS, 3)  # INVALID_ARGUMENT

        # The answer reaches the client a moment before the server's
        # bookkeeping ends: wait (bounded) for in-flight to drop to 0.
        scrape = wait_for("clipserve_inflight_requests to reach 0", lambda: (
            lambda s: s if s.total("clipserve_inflight_requests") == 0 else None)(scrape_metrics(metrics_url)), 10)
        check_scrape(scrape, source, models)

        lint = subprocess.run([args.promtool, "check", "metrics"], input=scrape.text, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        check(lint.returncode == 0 and not lint.stdout.strip(),
              f"promtool check metrics: clean{'' if not lint.stdout.strip() else ':' + chr(10) + lint.stdout}")

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [os.path.join(source, "deploy/alerts.yml")],
            "scrape_configs": [{"job_name": "clipserve",
                                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }
        _, prom = start_prometheus(children, args.prometheus, config, tmp)
        check_prometheus(prom, source, models, args.client, grpc_addr, ok_npy)

        # Drain: the server exits 0 and the availability alerts turn active.
        log("SIGTERM to clipserve")
        rc = children.stop(server, timeout=60)
        check(rc == 0, f"clipserve drained and exited 0 on SIGTERM (exit {rc})")

        def down_alerts():
            names = {a for a, state in prom.active_alerts() if state in ("pending", "firing")}
            return names if {"ClipserveTargetDown", "ClipserveUnavailable"} <= names else None

        names = wait_for("ClipserveTargetDown and ClipserveUnavailable to turn active", down_alerts, 30)
        log(f"after the server stopped, active alerts: {sorted(names)}")
        check(prom.one('up{job="clipserve"}') == 0, 'up{job="clipserve"} == 0')
        failed = False
        log("PASS")
        return 0
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    finally:
        finish(children, tmp, failed, args.keep)


if __name__ == "__main__":
    sys.exit(main())
