#!/usr/bin/python3
"""End to end: the real clipserve-perf against the real clipserve.

  perf_integration_test.py --server CLIPSERVE --perf CLIPSERVE_PERF
      --bench-repo CLIPSERVE_BENCH_REPO --source-dir DIR [TEST ...]

Writes the benchmark model repository (tiny-b8, tiny-b1, micro), starts
clipserve on 127.0.0.1 with --grpc-port 0 --metrics-port 0 (when a test
needs it), runs clipserve-perf with short windows on the cheap model
`micro` (4 x 16 x 16 clips, batches up to 8), and checks its --json and
--csv output. Tests (default: all):

  usage          flag errors exit 64 with a clear message (no server)
  concurrency    closed loop, clipserve protocol, two levels
  request_rate   open loop: achieved rate within 30 % of the offered one
  kserve_raw     --protocol kserve --batch 3, raw_input_contents
  kserve_typed   --protocol kserve --batch 3, typed contents, fp32
  video          --payload video: an H.264 file (made with ffmpeg), decoded
                 by the server; decode time reported
  unknown_model  errors counted as NOT_FOUND, exit status 1 (both protocols
                 when the server has KServe)
  plot           bench/plot_perf.py makes valid PNGs from two runs' JSON

CLIPSERVE_PERF_SERVER in the environment replaces --server (e.g. a copy of
another build's binary). A server binary without
inference.GRPCInferenceService fails the kserve tests; a missing ffmpeg fails
the video test (scripts/install-deps.sh installs it).
Exit 0: pass, 1: fail. Every wait is
bounded; the server is stopped at the end, also on failure.
"""
import argparse
import csv
import ctypes
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

MICRO_MAX_BATCH = 8  # bench/make_repository.cc
MICRO_DIMS = ("4", "16", "16")


class Failure(Exception):
    pass


class Missing(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Env:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.server_bin = os.environ.get("CLIPSERVE_PERF_SERVER") or args.server
        self.proc = None
        self.address = None
        self.log_path = os.path.join(tmp, "server.log")
        self._kserve = None

    def has_kserve(self):
        if self._kserve is None:
            with open(self.server_bin, "rb") as f:
                self._kserve = b"GRPCInferenceService" in f.read()
        return self._kserve

    def server(self):
        if self.proc is not None:
            return self.address
        repo = os.path.join(self.tmp, "repository")
        out = subprocess.run([self.args.bench_repo, repo], capture_output=True, text=True,
                             timeout=120)
        check(out.returncode == 0, f"clipserve-bench-repo failed: {out.stderr}")
        cmd = [self.server_bin, "--model-repository", repo, "--grpc-address", "127.0.0.1",
               "--grpc-port", "0", "--metrics-port", "0"]
        log(f"start {' '.join(cmd)}")
        with open(self.log_path, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(self.log_path, errors="replace") as f:
                m = re.search(r"serving gRPC on port (\d+)", f.read())
            if m:
                self.address = f"127.0.0.1:{m.group(1)}"
                return self.address
            check(self.proc.poll() is None, "clipserve exited while starting")
            time.sleep(0.1)
        raise Failure("clipserve did not start within 120 s")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def dump_log(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except OSError:
            return
        print(f"---- last {len(tail)} lines of the server's log ----")
        sys.stdout.write("".join(tail))

    def perf(self, name, *flags, server=True, timeout=120):
        """Runs clipserve-perf; returns (exit code, output, json or None, csv rows or None)."""
        json_path = os.path.join(self.tmp, f"{name}.json")
        csv_path = os.path.join(self.tmp, f"{name}.csv")
        cmd = [self.args.perf]
        if server:
            cmd += ["--server", self.server(), "--json", json_path, "--csv", csv_path]
        cmd += list(flags)
        log(f"run {' '.join(cmd)}")
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout)
        sys.stdout.write(out.stdout)
        sys.stdout.write(out.stderr)
        data = rows = None
        if server and os.path.exists(json_path):
            with open(json_path) as f:
                data = json.load(f)
        if server and os.path.exists(csv_path):
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
        return out.returncode, out.stdout + out.stderr, data, rows


# ---- checks -------------------------------------------------------------------

def check_metadata(data, **expected):
    for key in ("tool", "server", "model", "model_version", "protocol", "payload", "mode",
                "dtype", "shape", "batch", "kserve_contents", "warmup_seconds",
                "window_seconds", "started", "finished", "steps"):
        check(key in data, f"JSON has no {key!r}")
    for key, value in expected.items():
        check(data[key] == value, f"JSON {key} is {data[key]!r}, expected {value!r}")
    iso = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
    check(re.match(iso, data["started"]) and re.match(iso, data["finished"]),
          f"timestamps {data['started']} {data['finished']}")
    check(data["started"] <= data["finished"], "started after finished")


def check_good_step(step, max_batch=MICRO_MAX_BATCH, min_batch=1, video=False):
    where = f"step {step['index']}"
    check(step["ok"] > 0, f"{where}: ok {step['ok']}")
    check(step["errors"] == {} and step["error_count"] == 0, f"{where}: errors {step['errors']}")
    check(step["unfinished"] == 0, f"{where}: unfinished {step['unfinished']}")
    check(step["sent"] == step["ok"], f"{where}: sent {step['sent']} != ok {step['ok']}")
    order = [step[k] for k in ("min_us", "p50_us", "p90_us", "p95_us", "p99_us", "max_us")]
    check(order == sorted(order) and order[0] > 0, f"{where}: latencies out of order: {order}")
    check(step["requests_per_second"] > 0, f"{where}: no throughput")
    check(abs(step["clips_per_second"] - step["clips_per_request"] * step["requests_per_second"])
          < 1e-6 * max(1, step["clips_per_second"]), f"{where}: clips/s vs req/s")
    # The server-side split is in every response.
    check(step["split_count"] == step["ok"], f"{where}: split in {step['split_count']} of "
          f"{step['ok']} responses")
    check(step["mean_compute_us"] > 0 and step["mean_queue_us"] >= 0,
          f"{where}: split {step['mean_queue_us']} / {step['mean_compute_us']}")
    check((step["mean_decode_us"] > 0) == video, f"{where}: decode {step['mean_decode_us']}")
    sizes = {int(k): v for k, v in step["batch_sizes"].items()}
    check(sizes and all(min_batch <= b <= max_batch for b in sizes),
          f"{where}: batch sizes {sizes} outside [{min_batch}, {max_batch}]")
    check(sum(sizes.values()) == step["ok"], f"{where}: batch histogram sums to "
          f"{sum(sizes.values())}, not {step['ok']}")
    mean = sum(b * n for b, n in sizes.items()) / step["ok"]
    check(abs(mean - step["mean_batch_size"]) < 1e-6, f"{where}: mean batch {mean}")


def check_csv(rows, data):
    steps = data["steps"]
    check(rows is not None and len(rows) == len(steps), f"CSV has {rows and len(rows)} rows, "
          f"{len(steps)} steps")
    for row, step in zip(rows, steps):
        for key in ("ok", "sent", "error_count", "dropped", "unfinished", "split_count"):
            check(int(row[key]) == step[key], f"CSV {key} {row[key]} != JSON {step[key]}")
        for key in ("p50_us", "p99_us", "clips_per_second", "mean_batch_size"):
            check(abs(float(row[key]) - step[key]) <= 1e-6 * max(1, abs(step[key])),
                  f"CSV {key} {row[key]} != JSON {step[key]}")
        check(row["mode"] == step["mode"] and row["protocol"] == data["protocol"],
              f"CSV mode/protocol {row['mode']} {row['protocol']}")


# ---- tests --------------------------------------------------------------------

def test_usage(env):
    cases = [
        (["--protocol", "kserve", "--model", "m", "--video", "/dev/null"],
         "no encoded-video input"),
        (["--batch", "2"], "--batch needs --protocol kserve"),
        (["--concurrency", "1", "--request-rate", "5"], "not both"),
        (["--request-rate", "0"], "--request-rate must list rates"),
        (["--protocol", "kserve"], "needs --model"),
        (["--kserve-contents", "raw"], "need --protocol kserve"),
        (["--protocol", "grpc"], "--protocol must be"),
        (["--payload", "audio"], "--payload must be tensor or video"),
        (["--dtype", "int8"], "--dtype must be uint8 or fp32"),
        (["--window-seconds", "0"], "--window-seconds must be > 0"),
        (["--video", "/dev/null", "--frames", "4"], "--frames is for tensor payloads"),
    ]
    for flags, message in cases:
        code, text, _, _ = env.perf("usage", *flags, server=False, timeout=30)
        check(code == 64, f"{flags}: exit {code}, expected 64")
        check(message in text, f"{flags}: no {message!r} in {text!r}")


def test_concurrency(env):
    code, _, data, rows = env.perf("concurrency", "--model", "micro", "--concurrency", "1,4",
                                   "--warmup-seconds", "0.5", "--window-seconds", "2")
    check(code == 0, f"exit {code}")
    check_metadata(data, protocol="clipserve", payload="tensor", mode="concurrency",
                   model="micro", dtype="uint8", shape=[4, 16, 16, 3], batch=1,
                   kserve_contents=None)
    check([s["concurrency"] for s in data["steps"]] == [1, 4], "levels")
    for step in data["steps"]:
        check(step["offered_rate"] is None and step["dropped"] == 0, "closed-loop fields")
        check(step["in_flight_at_window_end"] <= step["concurrency"],
              f"in flight {step['in_flight_at_window_end']} > concurrency")
        check_good_step(step)
    check(set(data["steps"][0]["batch_sizes"]) == {"1"}, "concurrency 1 batches only 1")
    check_csv(rows, data)


def test_request_rate(env):
    rates = [10, 25]
    code, _, data, rows = env.perf("rate", "--model", "micro", "--request-rate",
                                   ",".join(map(str, rates)), "--seed", "1",
                                   "--warmup-seconds", "1", "--window-seconds", "4")
    check(code == 0, f"exit {code}")
    check_metadata(data, protocol="clipserve", mode="request-rate", max_outstanding=1024)
    for step, rate in zip(data["steps"], rates):
        check(step["concurrency"] is None and step["offered_rate"] == rate, "rate fields")
        check(step["dropped"] == 0, f"dropped {step['dropped']}")
        check(abs(step["achieved_rate"] - rate) <= 0.3 * rate,
              f"achieved {step['achieved_rate']:.2f}/s for {rate}/s offered")
        check(abs(step["requests_per_second"] - rate) <= 0.4 * rate,
              f"throughput {step['requests_per_second']:.2f}/s for {rate}/s offered")
        check_good_step(step)
    check_csv(rows, data)
    check(rows[0]["concurrency"] == "" and float(rows[0]["offered_rate"]) == rates[0],
          "CSV rate columns")


def kserve_run(env, name, *flags):
    if not env.has_kserve():
        raise Missing(f"{env.server_bin} has no inference.GRPCInferenceService")
    return env.perf(name, "--protocol", "kserve", "--model", "micro", *flags)


def test_kserve_raw(env):
    code, _, data, rows = kserve_run(env, "kserve_raw", "--batch", "3", "--concurrency", "2",
                                     "--warmup-seconds", "0.5", "--window-seconds", "2")
    check(code == 0, f"exit {code}")
    check_metadata(data, protocol="kserve", payload="tensor", model="micro", dtype="uint8",
                   shape=[3, 4, 16, 16, 3], batch=3, kserve_contents="raw")
    for step in data["steps"]:
        check(step["clips_per_request"] == 3, "clips per request")
        check_good_step(step, min_batch=3)
    check_csv(rows, data)


def test_kserve_typed(env):
    code, _, data, rows = kserve_run(env, "kserve_typed", "--batch", "3", "--dtype", "fp32",
                                     "--kserve-contents", "typed", "--kserve-outputs", "logits",
                                     "--request-rate", "10", "--warmup-seconds", "0.5",
                                     "--window-seconds", "2")
    check(code == 0, f"exit {code}")
    check_metadata(data, protocol="kserve", model="micro", dtype="fp32",
                   shape=[3, 3, 4, 16, 16], batch=3, kserve_contents="typed",
                   mode="request-rate")
    for step in data["steps"]:
        check_good_step(step, min_batch=3)
    check_csv(rows, data)


def test_video(env):
    if shutil.which("ffmpeg") is None:
        raise Missing("no ffmpeg to make the video")
    path = os.path.join(env.tmp, "clip.mp4")
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                          "testsrc2=size=320x240:rate=25", "-t", "1", "-c:v", "libx264",
                          "-pix_fmt", "yuv420p", path], capture_output=True, text=True,
                         timeout=60)
    check(out.returncode == 0, f"ffmpeg: {out.stderr}")
    code, text, data, rows = env.perf("video", "--model", "micro", "--video", path,
                                      "--concurrency", "2", "--warmup-seconds", "0.5",
                                      "--window-seconds", "2")
    check(code == 0, f"exit {code}")
    check_metadata(data, protocol="clipserve", payload="video", video=path,
                   video_bytes=os.path.getsize(path), dtype=None, shape=None)
    for step in data["steps"]:
        check_good_step(step, video=True)
    check_csv(rows, data)
    check("dec ms" in text, "the table has a decode column")


def test_unknown_model(env):
    runs = [("unknown", [])]
    if env.has_kserve():
        runs.append(("unknown_kserve", ["--protocol", "kserve"]))
    else:
        log("(server without KServe: clipserve protocol only)")
    for name, extra in runs:
        code, text, data, rows = env.perf(
            name, *extra, "--model", "no-such-model", "--frames", MICRO_DIMS[0], "--height",
            MICRO_DIMS[1], "--width", MICRO_DIMS[2], "--concurrency", "2",
            "--warmup-seconds", "0", "--window-seconds", "1")
        check(code == 1, f"{name}: exit {code}, expected 1 (nothing succeeded)")
        check("NOT_FOUND" in text, f"{name}: the output names NOT_FOUND")
        step = data["steps"][0]
        check(step["ok"] == 0 and step["sent"] > 0, f"{name}: ok {step['ok']} sent {step['sent']}")
        check(set(step["errors"]) == {"NOT_FOUND"}, f"{name}: errors {step['errors']}")
        check(step["errors"]["NOT_FOUND"] == step["sent"] == step["error_count"],
              f"{name}: every request failed NOT_FOUND")
        check(rows[0]["errors"] == f"NOT_FOUND:{step['sent']}", f"CSV errors {rows[0]['errors']}")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    check(head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path}: not a PNG")
    return struct.unpack(">II", head[16:24])


def test_plot(env):
    code, _, _, _ = env.perf("plot_c", "--model", "micro", "--concurrency", "1,2",
                             "--warmup-seconds", "0.3", "--window-seconds", "1")
    check(code == 0, f"concurrency run: exit {code}")
    code, _, _, _ = env.perf("plot_r", "--model", "micro", "--request-rate", "8",
                             "--warmup-seconds", "0.3", "--window-seconds", "1.5")
    check(code == 0, f"rate run: exit {code}")
    out_dir = os.path.join(env.tmp, "plots")
    script = os.path.join(env.args.source_dir, "bench", "plot_perf.py")
    cmd = [sys.executable, script, "-o", out_dir, "--prefix", "t", "--label", "closed",
           "--label", "open", os.path.join(env.tmp, "plot_c.json"),
           os.path.join(env.tmp, "plot_r.json")]
    log(f"run {' '.join(cmd)}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, f"plot_perf.py: exit {out.returncode}: {out.stderr}")
    for name in ("t-latency.png", "t-batches.png"):
        path = os.path.join(out_dir, name)
        check(os.path.exists(path), f"no {name}")
        width, height = png_size(path)
        size = os.path.getsize(path)
        check(width >= 300 and height >= 200, f"{name}: {width} x {height}")
        check(10_000 < size < 200_000, f"{name}: {size} bytes")
        log(f"{name}: {width} x {height}, {size} bytes")


def test_streams(env):
    # Two cameras of 320x240 at 25 fps for 3 s, pushed to the micro model
    # (4-frame windows, stride 4): 75 frames, 18 windows each, none dropped.
    code, text, data, rows = env.perf("streams", "--model", "micro", "--streams", "2",
                                      "--stream-size", "320x240", "--stream-seconds", "3")
    check(code == 0, f"exit {code}")
    check(data["mode"] == "streams" and data["transport"] == "push", "a pushed streams run")
    check((data["width"], data["height"], data["fps"]) == (320, 240, 25), "the asked size and rate")
    run = data["runs"][0]
    overall = run["overall"]
    check(run["streams"] == 2 and len(run["per_stream"]) == 2, "two streams")
    check(overall["frames_sent"] == 150, f"150 frames sent ({overall['frames_sent']})")
    check(overall["windows"] == 36 and overall["dropped"] == 0,
          f"36 windows answered, none dropped ({overall['windows']}, {overall['dropped']})")
    check(overall["ended"] == {"OK": 2}, f"both streams ended OK ({overall['ended']})")
    check(0 < overall["p50_us"] <= overall["p99_us"] <= overall["max_us"],
          "0 < p50 <= p99 <= max")
    check(overall["client_count"] > 0 and overall["client_p50_us"] >= overall["p50_us"] / 2,
          "client-observed latencies were matched to frames")
    check(run["passed"], "the run holds the default budget")
    check(len([r for r in rows if r["stream"] != "all"]) == 2, "a CSV row per stream")
    check("max streams" not in text, "no search without --find-max-streams")


def test_find_max_streams(env):
    # The micro model holds two small cameras easily: the search, capped at
    # 2, ends at 2.
    code, text, data, _ = env.perf("find_max", "--model", "micro", "--find-max-streams",
                                   "--streams", "2", "--stream-size", "320x240",
                                   "--stream-seconds", "1.5")
    check(code == 0, f"exit {code}")
    check(data["max_streams"] == 2, f"max_streams == 2 ({data['max_streams']})")
    check([r["streams"] for r in data["runs"]] == [1, 2], "trials of 1 then 2 streams")
    check("max streams within budget: 2" in text, "the table says so")


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--perf", required=True)
    p.add_argument("--bench-repo", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("tests", nargs="*", choices=[[]] + sorted(TESTS), default=[])
    args = p.parse_args()
    names = args.tests or sorted(TESTS)
    tmp = tempfile.mkdtemp(prefix="clipserve-perf-test-")
    env = Env(args, tmp)
    passed, failed = [], []
    try:
        for name in names:
            log(f"=== {name}")
            start = time.monotonic()
            try:
                TESTS[name](env)
                passed.append(name)
                log(f"--- {name}: ok ({time.monotonic() - start:.1f} s)")
            except (Failure, Missing, subprocess.TimeoutExpired, OSError, KeyError, ValueError,
                    TypeError) as e:
                failed.append(name)
                log(f"--- {name}: FAILED: {type(e).__name__}: {e}")
    finally:
        env.stop()
        if failed:
            env.dump_log()
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"passed {passed}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
