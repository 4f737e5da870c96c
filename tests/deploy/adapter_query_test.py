#!/usr/bin/python3
"""End to end: the prometheus-adapter rule of deploy/prometheus-adapter/values.yaml
against a real Prometheus scraping real clipserve servers under load.

  adapter_query_test.py --server CLIPSERVE --perf CLIPSERVE_PERF
      --bench-repo CLIPSERVE_BENCH_REPO --source-dir DIR [--prometheus PATH]

1. Reads the rule that publishes clipserve_queue_seconds_per_request from
   deploy/prometheus-adapter/values.yaml (rules.custom).
2. Writes the benchmark model repository and starts two clipserve servers on
   127.0.0.1 (--grpc-port 0 --metrics-port 0): "clipserve-0" gets the load,
   "clipserve-1" stays idle.
3. Starts Prometheus (1 s scrapes) with a scrape config that attaches static
   namespace="clipserve" and pod="clipserve-0"/"clipserve-1" labels, as the
   Kubernetes relabelling of deploy/prometheus.yml does, plus a job that
   scrapes clipserve-0 again without those labels (the seriesQuery must not
   find it).
4. Does what prometheus-adapter does: lists the series of seriesQuery over
   the relist interval, filters and renames them with `name` (every one must
   become clipserve_queue_seconds_per_request and carry the labels of the
   resource overrides), and fills metricsQuery's templates for
   GET .../namespaces/clipserve/pods/*/clipserve_queue_seconds_per_request:
   <<.LabelMatchers>> = namespace="clipserve",pod="clipserve-0" for one pod,
   namespace="clipserve",pod=~"clipserve-0|clipserve-1" for several (as the
   adapter's naming.metricsQuery.Build writes them), <<.GroupBy>> = pod.
5. Idle (no request yet): the query gives exactly 0 for both pods (the plain
   sum/count ratio would be NaN).
6. Low load (clipserve-perf, concurrency 1, ~21 s) on tiny-b1
   (max_batch_size 1), then high load (concurrency 16, ~64 s, so that the
   whole 1 m rate window lies in it). After each phase, once Prometheus has
   scraped the server's final counts, the exact filled query must return one
   finite series for pod="clipserve-0"; high must be > 2 x low and > 0.1 s,
   within a factor 2 of the queue time clipserve-perf measured, and the idle
   pod must stay at 0.

Everything it starts is stopped at the end, also on failure or a signal
(children also get SIGKILL should this script die). Loopback only; every wait
is bounded; it takes about 2 min. Exit 0: pass, 1: fail (a missing prometheus
is a failure too, not a skip).
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from live_util import (Children, Failure, check, die_with_parent, finish, http_get,  # noqa: E402
                       install_signal_handlers, log, start_clipserve, start_prometheus, wait_for)

METRIC = "clipserve_queue_seconds_per_request"
NAMESPACE = "clipserve"
LOADED_POD = "clipserve-0"
IDLE_POD = "clipserve-1"
MODEL = "tiny-b1"  # max_batch_size 1: with 16 callers, 15 must wait
LOW_CONCURRENCY = 1
LOW_SECONDS = (1, 20)  # warm-up, window
HIGH_CONCURRENCY = 16
HIGH_SECONDS = (2, 62)  # together >= the 1 m rate window


# ---- the rule, as prometheus-adapter reads it -------------------------------

def load_rule(path):
    import yaml  # python3-yaml
    with open(path) as f:
        values = yaml.safe_load(f)
    prom = values.get("prometheus") or {}
    check(str(prom.get("url", "")).startswith(("http://", "https://")) and prom.get("port"),
          f"values.yaml: prometheus.url/port set ({prom.get('url')}:{prom.get('port')})")
    rules = (values.get("rules") or {}).get("custom") or []
    mine = [r for r in rules if (r.get("name") or {}).get("as") == METRIC]
    check(len(mine) == 1, f"values.yaml: exactly one rules.custom entry names {METRIC} ({len(mine)})")
    rule = mine[0]
    for key in ("seriesQuery", "resources", "name", "metricsQuery"):
        check(key in rule, f"rule has {key}")
    # The chart renders rules.custom through Helm's tpl: no {{ }} may appear.
    def strings(v):
        if isinstance(v, dict):
            return [x for k, w in v.items() for x in strings(k) + strings(w)]
        if isinstance(v, list):
            return [x for w in v for x in strings(w)]
        return [v] if isinstance(v, str) else []

    check(not [t for t in strings(rule) if "{{" in t or "}}" in t],
          "the rule has no {{ }} (the chart passes it through tpl)")
    overrides = rule["resources"].get("overrides") or {}
    by_resource = {}
    for label, target in overrides.items():
        res = target.get("resource", "")
        by_resource[res.rstrip("s") if res in ("pods", "namespaces") else res] = label
    check("namespace" in by_resource and "pod" in by_resource,
          f"resources.overrides map labels to namespace and pod ({overrides})")
    interval = values.get("metricsRelistInterval", "1m")
    return rule, by_resource["namespace"], by_resource["pod"], parse_duration(interval)


def parse_duration(text):
    m = re.fullmatch(r"(\d+)(s|m|h)", str(text))
    if not m:
        raise Failure(f"cannot parse duration {text!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def go_expand(template, match):
    """Go's regexp.ExpandString: $1, ${1}, $name, ${name}, $$; an unknown
    group expands to nothing."""
    def one(m):
        if m.group(0) == "$$":
            return "$"
        key = m.group(1) or m.group(2)
        try:
            return match.group(int(key) if key.isdigit() else key) or ""
        except IndexError:
            return ""

    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, template)


def metric_name_for(rule, series_name):
    """naming.metricNamer: seriesFilters and name.matches filter (unanchored
    search), name.as renames (default $0 or $1)."""
    for f in rule.get("seriesFilters") or []:
        if "is" in f and not re.search(f["is"], series_name):
            return None
        if "isNot" in f and re.search(f["isNot"], series_name):
            return None
    name = rule.get("name") or {}
    pattern = re.compile(name.get("matches") or ".*")
    m = pattern.search(series_name)
    if not m:
        return None
    as_ = name.get("as") or ("$0" if pattern.groups == 0 else "$1")
    return go_expand(as_, m)


def go_quote(value):
    """Go's %q for the plain ASCII label values used here."""
    return json.dumps(value)


def label_matchers(ns_label, namespace, pod_label, pods):
    """naming.metricsQuery.Build: the namespace matcher, then the resource's:
    label="name" for one name, label=~"a|b" for several."""
    exprs = [f"{ns_label}={go_quote(namespace)}"]
    if len(pods) == 1:
        exprs.append(f"{pod_label}={go_quote(pods[0])}")
    else:
        exprs.append(f"{pod_label}=~{go_quote('|'.join(pods))}")
    return ",".join(exprs)


def fill(template, series, matchers, group_by):
    """The Go template with << >> delimiters, for the fields the rule may use."""
    fields = {"Series": series, "LabelMatchers": matchers, "GroupBy": group_by}

    def one(m):
        if m.group(1) not in fields:
            raise Failure(f"metricsQuery uses <<.{m.group(1)}>>, which this test does not fill")
        return fields[m.group(1)]

    out = re.sub(r"<<-?\s*\.(\w+)\s*-?>>", one, template)
    if "<<" in out or ">>" in out:
        raise Failure(f"metricsQuery has template syntax this test does not handle: {template}")
    return out.strip()


def adapter_quantity(v):
    """What the adapter serves for a value (provider.metricFor)."""
    return "0" if math.isnan(v) else f"{int(v * 1000)}m"


# ---- load and scrapes -------------------------------------------------------

def server_counts(metrics_url):
    """(sum of clipserve_queue_duration_seconds_count, sum of
    clipserve_inflight_requests) on the server itself."""
    _, text = http_get(metrics_url)

    def total(name):
        return sum(float(m.group(1)) for m in re.finditer(rf"^{name}\{{[^}}]*\}}\s+(\S+)", text, re.M))

    return total("clipserve_queue_duration_seconds_count"), total("clipserve_inflight_requests")


def wait_scraped(prom, metrics_url, pod):
    """Waits until the server has answered every request (its count no longer
    moves) and Prometheus holds that count; returns the evaluation time."""
    want = wait_for(f"{pod} to answer every request",
                    lambda: (lambda c: c[0] if c[1] == 0 else None)(server_counts(metrics_url)), 60)
    q = f'sum(clipserve_queue_duration_seconds_count{{job="clipserve",pod="{pod}"}})'
    wait_for(f"Prometheus to scrape {pod}'s final count ({want:g})",
             lambda: (lambda r: r and r[0][1] == want)(prom.query(q)), 20)
    log(f"Prometheus has {pod}'s {want:g} queued requests")
    return time.time()


def run_perf(perf, grpc_addr, concurrency, warmup, window, json_path):
    cmd = [perf, "--server", grpc_addr, "--model", MODEL, "--concurrency", str(concurrency),
           "--warmup-seconds", str(warmup), "--window-seconds", str(window), "--json", json_path]
    # Where clipserve-perf stops waiting for the window's calls after
    # --drain-seconds (default 10) and cancels the rest, let the last of the
    # 16 callers finish: on a busy machine each waits behind 15 others.
    usage = subprocess.run([perf, "--help"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30).stdout.decode(errors="replace")
    if "--drain-seconds" in usage:
        cmd += ["--drain-seconds", "60"]
    log(f"load: {' '.join(cmd)}")
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=warmup + window + 90, preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        raise Failure(f"clipserve-perf did not finish within {warmup + window + 90} s")
    out = r.stdout.decode(errors="replace")
    sys.stdout.write(out)
    if r.returncode != 0:
        raise Failure(f"clipserve-perf exited {r.returncode}")
    with open(json_path) as f:
        report = json.load(f)
    # A list of steps, or (schema 2) the run with its "steps".
    step = (report["steps"] if isinstance(report, dict) else report)[0]
    errors = step.get("error_count", sum(step["errors"].values()))
    check(step["ok"] > 0 and errors == 0 and not step.get("unfinished"),
          f"concurrency {concurrency}: {step['ok']} clips, no errors, none unfinished, "
          f"server queue {step['mean_queue_us'] / 1000:.2f} ms, compute {step['mean_compute_us'] / 1000:.2f} ms")
    return step


def per_pod(result):
    out = {}
    for labels, v in result:
        if set(labels) != {"pod"}:
            raise Failure(f"result series labelled {labels}, want only pod (sum by (<<.GroupBy>>))")
        if labels["pod"] in out:
            raise Failure(f"two series for pod {labels['pod']}: {result}")
        out[labels["pod"]] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--perf", required=True)
    ap.add_argument("--bench-repo", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    source = os.path.abspath(args.source_dir)
    install_signal_handlers()

    began = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clipserve-adapter-")
    children = Children()
    failed = True
    try:
        check(os.path.isfile(args.prometheus) and os.access(args.prometheus, os.X_OK),
              f"prometheus at {args.prometheus} (Debian's prometheus package)")
        rule, ns_label, pod_label, relist = load_rule(os.path.join(source, "deploy/prometheus-adapter/values.yaml"))
        log(f"rule: seriesQuery {rule['seriesQuery']}")
        log(f"rule: metricsQuery {rule['metricsQuery'].strip()}")

        repo = os.path.join(tmp, "repo")
        subprocess.run([args.bench_repo, repo], check=True, timeout=300, stdin=subprocess.DEVNULL)
        check(os.path.isfile(os.path.join(repo, MODEL, "config.pbtxt")), f"model repository has {MODEL}")

        _, grpc0, metrics0 = start_clipserve(children, args.server, repo,
                                             os.path.join(tmp, f"{LOADED_POD}.log"), LOADED_POD)
        _, _, metrics1 = start_clipserve(children, args.server, repo,
                                         os.path.join(tmp, f"{IDLE_POD}.log"), IDLE_POD)
        metrics_url = f"http://127.0.0.1:{metrics0}/metrics"

        def target(port, pod):
            return {"targets": [f"127.0.0.1:{port}"], "labels": {ns_label: NAMESPACE, pod_label: pod}}

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "clipserve", "static_configs": [target(metrics0, LOADED_POD),
                                                             target(metrics1, IDLE_POD)]},
                # The same server without namespace/pod: not a pod's series.
                {"job_name": "unlabelled", "static_configs": [{"targets": [f"127.0.0.1:{metrics0}"]}]},
            ],
        }
        _, prom = start_prometheus(children, args.prometheus, config, tmp)

        # Enough scrapes for a rate over the window (>= 2 samples per series).
        wait_for("3 scrapes of every target",
                 lambda: (lambda r: len(r) == 3 and all(v >= 3 for _, v in r))(
                     prom.query("count_over_time(up[1m])")), 30)

        # ---- discovery, as the adapter's relist does ----
        series = prom.series(rule["seriesQuery"], start=time.time() - relist)
        check(series, f"seriesQuery finds series: {len(series)}")
        names = {metric_name_for(rule, s["__name__"]) for s in series}
        check(names == {METRIC}, f"name rule maps every series to {METRIC} ({names})")
        check(all(s.get(ns_label) and s.get(pod_label) for s in series),
              f"every series carries the {ns_label!r} and {pod_label!r} labels of the resource overrides")
        pods = sorted({s[pod_label] for s in series})
        check(pods == [LOADED_POD, IDLE_POD] and {s[ns_label] for s in series} == {NAMESPACE},
              f"series found for pods {pods} in namespace {NAMESPACE}")
        check(prom.query('clipserve_queue_duration_seconds_count{job="unlabelled"}'),
              "the unlabelled job's series exist in Prometheus (and the seriesQuery left them out)")
        series_name = series[0]["__name__"]

        one_pod = fill(rule["metricsQuery"], series_name,
                       label_matchers(ns_label, NAMESPACE, pod_label, [LOADED_POD]), pod_label)
        all_pods = fill(rule["metricsQuery"], series_name,
                        label_matchers(ns_label, NAMESPACE, pod_label, [LOADED_POD, IDLE_POD]), pod_label)
        other_ns = fill(rule["metricsQuery"], series_name,
                        label_matchers(ns_label, "elsewhere", pod_label, [LOADED_POD]), pod_label)
        log(f"filled query, one pod:  {one_pod}")
        log(f"filled query, all pods: {all_pods}")

        def evaluate(at):
            one = per_pod(prom.query(one_pod, time=f"{at:.3f}"))
            both = per_pod(prom.query(all_pods, time=f"{at:.3f}"))
            check(list(one) == [LOADED_POD] and math.isfinite(one[LOADED_POD]),
                  f'one-pod query: exactly one series, pod="{LOADED_POD}", finite value '
                  f'{one.get(LOADED_POD)!r} s (adapter serves {adapter_quantity(one.get(LOADED_POD, math.nan))})')
            check(sorted(both) == [LOADED_POD, IDLE_POD] and both[LOADED_POD] == one[LOADED_POD],
                  f"pod=~ query: one series per pod, the same value for {LOADED_POD}: {both}")
            check(both[IDLE_POD] == 0, f"the idle pod {IDLE_POD} reports exactly 0 ({both[IDLE_POD]!r})")
            return one[LOADED_POD]

        # ---- idle ----
        idle_at = time.time()
        idle = evaluate(idle_at)
        check(idle == 0, f"before any request, {LOADED_POD} reports exactly 0 too ({idle!r}), not NaN")
        plain = prom.query(f'sum by ({pod_label}) (rate(clipserve_queue_duration_seconds_sum{{{ns_label}="{NAMESPACE}"}}[1m]))'
                           f' / sum by ({pod_label}) (rate(clipserve_queue_duration_seconds_count{{{ns_label}="{NAMESPACE}"}}[1m]))',
                           time=f"{idle_at:.3f}")
        check(plain and all(math.isnan(v) for _, v in plain),
              "(the plain sum/count ratio is NaN when idle: what the clamp avoids)")
        check(not prom.query(other_ns), "a namespace without clipserve pods: no series")

        # ---- low load ----
        low_start = time.time()
        low_step = run_perf(args.perf, f"127.0.0.1:{grpc0}", LOW_CONCURRENCY, *LOW_SECONDS,
                            os.path.join(tmp, "low.json"))
        low = evaluate(wait_scraped(prom, metrics_url, LOADED_POD))
        perf_low = low_step["mean_queue_us"] / 1e6
        check(abs(low - perf_low) < max(0.02, perf_low / 2),
              f"low load: {low * 1000:.2f} ms per request, clipserve-perf measured {perf_low * 1000:.2f} ms")

        # ---- high load ----
        high_start = time.time()
        high_step = run_perf(args.perf, f"127.0.0.1:{grpc0}", HIGH_CONCURRENCY, *HIGH_SECONDS,
                             os.path.join(tmp, "high.json"))
        high_at = wait_scraped(prom, metrics_url, LOADED_POD)
        check(high_at - 60 >= high_start - 1,
              f"the 1 m window at evaluation lies in the high-load phase ({high_at - high_start:.0f} s)")
        high = evaluate(high_at)
        perf_high = high_step["mean_queue_us"] / 1e6
        check(high > 2 * low and high - low > 0.1,
              f"high load: {high:.3f} s per request > 2 x low ({low * 1000:.2f} ms) and > low + 0.1 s")
        check(0.5 * perf_high <= high <= 2 * perf_high,
              f"high load: {high:.3f} s within a factor 2 of clipserve-perf's {perf_high:.3f} s")

        # How the signal moved (log only): the rule over both phases.
        data = prom.api("query_range", query=one_pod, start=f"{low_start:.3f}", end=f"{high_at:.3f}", step="5")
        for r in data["result"]:
            points = ", ".join(f"+{max(0.0, float(t) - low_start):.0f}s {float(v) * 1000:.1f}ms"
                               for t, v in r["values"])
            log(f"{METRIC}{{pod={r['metric'].get(pod_label)!r}}} every 5 s: {points}")

        log(f"summary: idle {idle:g} s, low {low * 1000:.2f} ms, high {high * 1000:.1f} ms "
            f"(adapter: {adapter_quantity(idle)}, {adapter_quantity(low)}, {adapter_quantity(high)}); "
            f"{time.monotonic() - began:.0f} s")
        failed = False
        log("PASS")
        return 0
    except (Failure, subprocess.SubprocessError, OSError, ImportError) as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    finally:
        finish(children, tmp, failed, args.keep)


if __name__ == "__main__":
    sys.exit(main())
