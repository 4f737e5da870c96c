#!/usr/bin/env python3
"""Triton's load generator, perf_analyzer, unchanged against the real
clipserve's Open Inference Protocol endpoint (-i grpc).

  perf_analyzer_test.py --server CLIPSERVE --bench-repo CLIPSERVE_BENCH_REPO
      --perf-analyzer PERF_ANALYZER CASE

PERF_ANALYZER is the wrapper scripts/fetch-perf-analyzer.sh installs
(.tools/bin/perf_analyzer). Run with the project's venv Python (it reads the
server's statistics with tritonclient). Cases:

  sweep    the benchmark repository's tiny-b8 (TinyVideoNet, 16 x 112 x 112,
           dynamic batching up to 8) at concurrency 1 and 4
           (--concurrency-range 1:4:3), three 2 s windows each, CSV report
           (-f). Stability is not what this checks (a shared 2-core machine
           is noisy), so any three windows count (-s 1000 --max-trials 3).
  builtin  the default invocation, `perf_analyzer -m i3d -i grpc -u ADDR`,
           against the server's built-in I3D (16 x 224 x 224, ~1.5 s a clip
           on 2 cores), with the shortest measurement that still is one:
           three windows of 2 requests (count_windows).

Each case checks that perf_analyzer exits 0 with no request error; that
each concurrency's report has requests, a throughput, and the server-side
split perf_analyzer computes from clipserve's ModelStatistics, whose
successful-request count agrees with perf_analyzer's own; and, from the
server after the run, that its statistics (tritonclient) and its Prometheus
metrics counted every request as OK and none as failed. The sweep also
checks that concurrency 4 made the dynamic batcher run batches larger than
one (fewer executions than inferences).

Everything it starts is stopped at the end, also on failure or a signal.
Loopback only; every wait is bounded. Exit 0: pass, 1: fail. Nothing is
skipped.
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import live_util  # noqa: E402
from live_util import (Children, Failure, check, die_with_parent, http_get,  # noqa: E402
                       install_signal_handlers, log)
from kserve_model import Model, run_tool  # noqa: E402

START_TIMEOUT = 180.0   # seconds for the server to load its models (the I3D: ~15 s)
PERF_TIMEOUT = 150.0    # seconds for one perf_analyzer run
RPC_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0



def requests_by_code(metrics_port, model):
    """clipserve_requests_total of `model`, {code: count}, from /metrics."""
    _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    out = {}
    for line in text.splitlines():
        if not line.startswith("clipserve_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.index("}")]))
        if labels.get("model") == model:
            out[labels["code"]] = out.get(labels["code"], 0) + float(line.rsplit(" ", 1)[1])
    return out


def model_stats(client, model):
    stats = client.get_inference_statistics(model, client_timeout=RPC_TIMEOUT).model_stats
    if len(stats) != 1:
        raise Failure(f"get_inference_statistics({model!r}): {len(stats)} entries")
    return stats[0]


# perf_analyzer's own gRPC client (the PyPI build) now and then aborts as it
# starts, before it sends anything: its event engine logs "epoll_wait error:
# Bad file descriptor" and calls abort() (seen once in CI, 1 run in ~10).
# That run says nothing about the server, so it is run again, once.
STARTUP_ABORT = "epoll_wait error: Bad file descriptor"


def run_perf_analyzer(cmd, out_path):
    for attempt in (1, 2):
        log(f"run: {' '.join(cmd)}")
        started = time.monotonic()
        with open(out_path, "wb") as out:
            try:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, timeout=PERF_TIMEOUT,
                                   preexec_fn=die_with_parent)
            except subprocess.TimeoutExpired:
                raise Failure(f"perf_analyzer ran over {PERF_TIMEOUT} s")
        took = time.monotonic() - started
        with open(out_path, errors="replace") as f:
            text = f.read()
        log(f"perf_analyzer exited {p.returncode} after {took:.1f} s")
        if attempt == 1 and p.returncode < 0 and took < 2 and STARTUP_ABORT in text:
            log("perf_analyzer's client aborted as it started (its gRPC event engine); again")
            continue
        break
    sys.stdout.write(text)
    errors = [line for line in text.splitlines()
              if "had error" in line or line.startswith(("Failed", "error", "Error"))]
    check(p.returncode == 0 and not errors,
          f"perf_analyzer finished without errors (exit {p.returncode}, errors {errors})")
    return text


def parse_report(text):
    """{concurrency: {"client": {...}, "server": {...}}} from perf_analyzer's
    stdout: the Request count of the Client block, the Inference, Execution
    and Successful request counts of the Server block."""
    report = {}
    blocks = re.split(r"^Request concurrency: (\d+)$", text, flags=re.M)
    for n, body in zip(blocks[1::2], blocks[2::2]):
        client, _, server = body.partition("Server:")

        def number(pattern, where):
            m = re.search(pattern, where)
            return int(m.group(1)) if m else None

        report[int(n)] = {
            "requests": number(r"Request count: (\d+)", client),
            "inferences": number(r"Inference count: (\d+)", server),
            "executions": number(r"Execution count: (\d+)", server),
            "successes": number(r"Successful request count: (\d+)", server),
        }
    return report


def check_report(report, levels):
    check(sorted(report) == sorted(levels),
          f"perf_analyzer reported concurrency {sorted(levels)} (got {sorted(report)})")
    for n in levels:
        r = report[n]
        check(r["requests"] and r["requests"] > 0, f"concurrency {n}: {r['requests']} requests")
        # The server-side block comes from ModelStatistics snapshots taken
        # around perf_analyzer's windows; a request in flight at a window's
        # edge may land on either side.
        check(r["successes"] is not None and abs(r["successes"] - r["requests"]) <= n
              and r["inferences"] == r["successes"],
              f"concurrency {n}: the server's statistics counted the requests "
              f"(server {r['successes']} requests of {r['inferences']} clips, "
              f"perf_analyzer {r['requests']})")


def check_server(client, metrics_port, model, before_stats, before_codes, report):
    after = model_stats(client, model)
    i, i0 = after.inference_stats, before_stats.inference_stats
    ok = i.success.count - i0.success.count
    measured = sum(r["requests"] for r in report.values())
    check(ok >= measured and i.fail.count == i0.fail.count,
          f"statistics: {ok} requests OK (at least the {measured} measured), none failed")
    codes = requests_by_code(metrics_port, model)
    grew = {c: codes.get(c, 0) - before_codes.get(c, 0) for c in codes}
    check(grew.get("OK", 0) == ok and all(v == 0 for c, v in grew.items() if c != "OK"),
          f"metrics: clipserve_requests_total grew by {ok} OK and nothing else (got {grew})")
    return after


def case_sweep(args, children, tmp):
    repo = os.path.join(tmp, "models")
    run_tool([args.bench_repo, repo], "clipserve-bench-repo")
    model = Model(repo, "tiny-b8")
    check((model.c, model.t, model.h, model.w) == (3, 16, 112, 112),
          f"tiny-b8 takes 3 x 16 x 112 x 112 clips (got {model.c, model.t, model.h, model.w})")
    _, port, metrics_port = live_util.start_clipserve(
        children, args.server, repo, os.path.join(tmp, "clipserve.log"), timeout=START_TIMEOUT)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        before = model_stats(client, model.name)
        codes = requests_by_code(metrics_port, model.name)
        csv_path = os.path.join(tmp, "perf_analyzer.csv")
        text = run_perf_analyzer(
            [args.perf_analyzer, "-m", model.name, "-i", "grpc", "-u", f"127.0.0.1:{port}",
             "--concurrency-range", "1:4:3", "--measurement-interval", "2000",
             "--stability-percentage", "1000", "--max-trials", "3", "-f", csv_path],
            os.path.join(tmp, "perf_analyzer.log"))
        report = parse_report(text)
        check_report(report, [1, 4])
        check(report[4]["executions"] < report[4]["inferences"],
              f"concurrency 4: the dynamic batcher batched ({report[4]['executions']} "
              f"executions for {report[4]['inferences']} clips)")
        with open(csv_path, newline="") as f:
            rows = {int(r["Concurrency"]): r for r in csv.DictReader(f)}
        check(sorted(rows) == [1, 4], f"-f CSV: one row per concurrency (got {sorted(rows)})")
        for n, r in rows.items():
            check(float(r["Inferences/Second"]) > 0 and float(r["Server Compute Infer"]) > 0
                  and float(r["p50 latency"]) > 0,
                  f"-f CSV, concurrency {n}: throughput {r['Inferences/Second']}/s, server "
                  f"compute infer {r['Server Compute Infer']} us, p50 {r['p50 latency']} us")
        after = check_server(client, metrics_port, model.name, before, codes, report)
        sizes = sorted(b.batch_size for b in after.batch_stats)
        check(sizes and sizes[-1] > 1,
              f"statistics: batch_stats has batches larger than 1 (sizes {sizes})")
    finally:
        client.close()


def case_builtin(args, children, tmp):
    _, port, metrics_port = live_util.start_clipserve(
        children, args.server, None, os.path.join(tmp, "clipserve.log"), timeout=START_TIMEOUT)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        md = client.get_model_metadata("i3d", client_timeout=RPC_TIMEOUT)
        shapes = [(t.name, t.datatype, list(t.shape)) for t in md.inputs]
        check(shapes == [("clip", "FP32", [-1, 3, 16, 224, 224])],
              f"built-in i3d lists one input, what perf_analyzer will send (got {shapes})")
        before = model_stats(client, "i3d")
        codes = requests_by_code(metrics_port, "i3d")
        text = run_perf_analyzer(
            [args.perf_analyzer, "-m", "i3d", "-i", "grpc", "-u", f"127.0.0.1:{port}",
             "--measurement-mode", "count_windows", "--measurement-request-count", "2",
             "--stability-percentage", "1000", "--max-trials", "3"],
            os.path.join(tmp, "perf_analyzer.log"))
        report = parse_report(text)
        check_report(report, [1])
        check_server(client, metrics_port, "i3d", before, codes, report)
    finally:
        client.close()


CASES = {"sweep": case_sweep, "builtin": case_builtin}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the clipserve binary")
    ap.add_argument("--bench-repo", required=True, help="the clipserve-bench-repo binary")
    ap.add_argument("--perf-analyzer", required=True,
                    help="perf_analyzer (scripts/fetch-perf-analyzer.sh installs .tools/bin/perf_analyzer)")
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    install_signal_handlers()
    if not os.access(args.perf_analyzer, os.X_OK):
        log(f"FAIL: {args.perf_analyzer} is not there: run scripts/fetch-perf-analyzer.sh")
        return 1
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=f"clipserve-perf-analyzer-{args.case}-")
    children = Children()
    ok = False
    try:
        CASES[args.case](args, children, tmp)
        rc = None
        for name, proc, _ in children.procs:
            if name == "clipserve":
                rc = children.stop(proc, timeout=STOP_TIMEOUT)
        check(rc == 0, f"clipserve drains and exits 0 on SIGTERM (got {rc})")
        ok = True
        log(f"PASS: {args.case}, {live_util.CHECKS[0]} checks in {time.monotonic() - started:.1f} s")
        return 0
    except Failure as e:
        log(f"FAIL: {e}")
        return 1
    except InferenceServerException as e:
        log(f"FAIL: unexpected error {e.status()}: {e.message()}")
        return 1
    finally:
        live_util.finish(children, tmp, failed=not ok, keep=False)


if __name__ == "__main__":
    sys.exit(main())
