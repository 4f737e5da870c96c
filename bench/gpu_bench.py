#!/usr/bin/env python3
"""The GPU benchmarks of scripts/gpu-check.sh; Python's standard library only.

    python3 bench/gpu_bench.py --build BUILD_DIR --out OUT_DIR [--quick]

Runs, with the binaries of BUILD_DIR, on CUDA device 0:
  1. offline I3D 16x224x224 (random weights) at batch 1..64 in fp32, fp16 and
     bf16: clips/s, ms/batch, peak GPU memory (clipserve-offline: the model
     loaded exactly as the server loads it, no gRPC, no batcher);
  2. offline I3D 64x224x224 at batch 1..16 in fp32 and fp16;
  3. served vs offline at the best fp16 batch size: clipserve on loopback,
     driven by clipserve-perf with enough concurrency to keep batches full,
     while nvidia-smi samples GPU utilisation; /metrics scraped at the end;
  4. batching on (max_batch_size 16) vs off (1) at concurrency 16, fp16.
Writes OUT_DIR/results.json and OUT_DIR/summary.md (the tables and the
issue's targets, each marked met or missed); logs and raw JSON beside them.
--quick shortens every window (a smoke run, not figures to record).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

PRECISIONS = ("fp32", "fp16", "bf16")


def config(name, frames, max_batch, precision, delay_us=5000):
    return f"""name: "{name}"
backend: "i3d"
max_batch_size: {max_batch}
input {{ name: "clip" data_type: TYPE_FP32 dims: [3, {frames}, 224, 224] }}
output {{ name: "logits" data_type: TYPE_FP32 dims: [400] }}
dynamic_batching {{ max_queue_delay_microseconds: {delay_us} max_queue_size: 4096 }}
instance_group {{ count: 1 kind: KIND_GPU gpus: [0] }}
parameters {{ key: "precision" value {{ string_value: "{precision}" }} }}
"""


def write_model(repo, name, text):
    os.makedirs(os.path.join(repo, name), exist_ok=True)
    with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
        f.write(text)


def run(cmd, log, **kw):
    print("+", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {done.returncode}; see {log}")
    return done.stdout


def offline(build, repo, model, batches, seconds, log):
    out = run([f"{build}/bench/clipserve-offline", "--model-repository", repo,
               "--model", model, "--batch-sizes", ",".join(map(str, batches)),
               "--seconds", str(seconds), "--warmup-runs", "3"], log)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


class GpuSampler:
    """nvidia-smi's utilisation.gpu every 200 ms while running."""

    def __init__(self):
        self.samples = []
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "--id=0", "-lms", "200"], stdout=subprocess.PIPE, text=True)
        self.recording = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if self.recording and line.strip().isdigit():
                self.samples.append(int(line.strip()))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Server:
    def __init__(self, build, repo, log):
        self.log = log
        self.proc = subprocess.Popen(
            [f"{build}/server/clipserve", "--model-repository", repo,
             "--grpc-address", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0"],
            stderr=open(log, "w"), stdout=subprocess.DEVNULL)
        deadline = time.time() + 600
        self.port = self.metrics_port = None
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                sys.exit(f"FAIL: clipserve exited at start; see {log}")
            text = open(log).read()
            m = re.search(r"serving gRPC on port (\d+)", text)
            mm = re.search(r"serving metrics on port (\d+)", text)
            if m and mm:
                self.port, self.metrics_port = int(m.group(1)), int(mm.group(1))
            time.sleep(0.5)
        if self.port is None:
            sys.exit(f"FAIL: clipserve did not start in 10 minutes; see {log}")

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as r:
            return r.read().decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def perf(build, port, model, concurrency, warmup, window, out_json, log):
    run([f"{build}/client/clipserve-perf", "--server", f"127.0.0.1:{port}",
         "--model", model, "--concurrency", str(concurrency),
         "--warmup-seconds", str(warmup), "--window-seconds", str(window),
         "--json", out_json], log)
    with open(out_json) as f:
        d = json.load(f)
    return d["steps"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    secs = 1 if a.quick else 2
    window = 4 if a.quick else 10
    warmup = 2 if a.quick else 4
    log = os.path.join(out, "bench.log")
    repo = os.path.join(out, "repository")
    results = {"gpu": subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader",
         "--id=0"], stdout=subprocess.PIPE, text=True).stdout.strip()}

    # 1, 2: offline.
    b16 = [1, 2, 4, 8, 16, 32, 64]
    b64 = [1, 2, 4, 8, 16]
    results["offline_16f"] = {}
    for p in PRECISIONS:
        write_model(repo, f"i3d16-{p}", config(f"i3d16-{p}", 16, 64, p))
        results["offline_16f"][p] = offline(a.build, repo, f"i3d16-{p}", b16, secs, log)
    results["offline_64f"] = {}
    for p in ("fp32", "fp16"):
        write_model(repo, f"i3d64-{p}", config(f"i3d64-{p}", 64, 16, p))
        results["offline_64f"][p] = offline(a.build, repo, f"i3d64-{p}", b64, secs, log)

    # 3, 4: served. The best fp16 batch size offline sets max_batch_size.
    fp16 = results["offline_16f"]["fp16"]
    best = max(fp16, key=lambda r: r["clips_per_second"])
    best_batch = best["batch_size"]
    serve_repo = os.path.join(out, "serve-repository")
    write_model(serve_repo, "served", config("served", 16, best_batch, "fp16"))
    write_model(serve_repo, "b16", config("b16", 16, 16, "fp16", delay_us=2000))
    write_model(serve_repo, "b1", config("b1", 16, 1, "fp16", delay_us=0))
    server = Server(a.build, serve_repo, os.path.join(out, "server.log"))
    sampler = GpuSampler()
    try:
        # Two lanes per instance, each wanting a full batch, and a full batch
        # queued behind them.
        conc = min(3 * best_batch, 256)
        threading.Timer(warmup, lambda: setattr(sampler, "recording", True)).start()
        served = perf(a.build, server.port, "served", conc, warmup, window,
                      os.path.join(out, "served.json"), log)
        sampler.recording = False
        metrics = server.scrape()
        on = perf(a.build, server.port, "b16", 16, warmup, window,
                  os.path.join(out, "batching-on.json"), log)
        off = perf(a.build, server.port, "b1", 16, warmup, window,
                   os.path.join(out, "batching-off.json"), log)
    finally:
        sampler.stop()
        server.stop()
    with open(os.path.join(out, "metrics.txt"), "w") as f:
        f.write(metrics)
    busy = sum(sampler.samples) / len(sampler.samples) if sampler.samples else float("nan")
    results["served"] = {"best_batch": best_batch, "concurrency": conc,
                         "offline_clips_per_second": best["clips_per_second"],
                         "served": served, "gpu_busy_percent": busy,
                         "gpu_busy_samples": len(sampler.samples)}
    results["batching"] = {"concurrency": 16, "on": on, "off": off}
    results["metrics"] = [l for l in metrics.splitlines()
                          if re.match(r"clipserve_(gpu_|batch_(upload|download)_duration_seconds_(sum|count))", l)]

    # Precision agreement from the CUDA tests' output, when present.
    results["precision_agreement"] = []
    ctest_log = os.path.join(out, "ctest-cuda.log")
    if os.path.exists(ctest_log):
        for line in open(ctest_log):
            if "precision-check: " in line:
                results["precision_agreement"].append(
                    json.loads(line.split("precision-check: ", 1)[1]))

    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary(results))
    print(open(os.path.join(out, "summary.md")).read())


def summary(r):
    lines = [f"# GPU check: {r['gpu']}", ""]
    off = r["offline_16f"]
    lines += ["## Offline I3D 16x224x224 (clips/s; ms/batch; peak allocated GiB)", "",
              "| batch | " + " | ".join(PRECISIONS) + " |", "|---|" + "---|" * len(PRECISIONS)]
    for i, row in enumerate(off["fp32"]):
        cells = []
        for p in PRECISIONS:
            x = off[p][i]
            cells.append(f"{x['clips_per_second']:.1f}; {x['ms_per_batch']:.1f}; "
                         f"{x['gpu_memory_allocated_peak_bytes'] / 2**30:.2f}")
        lines.append(f"| {row['batch_size']} | " + " | ".join(cells) + " |")
    o64 = r["offline_64f"]
    lines += ["", "## Offline I3D 64x224x224 (clips/s; ms/batch)", "",
              "| batch | fp32 | fp16 |", "|---|---|---|"]
    for i, row in enumerate(o64["fp32"]):
        lines.append(f"| {row['batch_size']} | {row['clips_per_second']:.1f}; {row['ms_per_batch']:.1f} | "
                     f"{o64['fp16'][i]['clips_per_second']:.1f}; {o64['fp16'][i]['ms_per_batch']:.1f} |")
    s = r["served"]
    ratio = s["served"]["throughput"] / s["offline_clips_per_second"]
    b = r["batching"]
    onoff = b["on"]["throughput"] / b["off"]["throughput"] if b["off"]["throughput"] else float("inf")
    by_batch = {x["batch_size"]: x for x in off["fp32"]}
    fp16_32 = ({x["batch_size"]: x for x in off["fp16"]}[32]["clips_per_second"] /
               by_batch[32]["clips_per_second"])
    lines += ["", "## Served (fp16)", "",
              f"- best offline batch {s['best_batch']}: {s['offline_clips_per_second']:.1f} clips/s",
              f"- served at concurrency {s['concurrency']}: {s['served']['throughput']:.1f} clips/s, "
              f"mean batch {s['served'].get('mean_batch_size', 0):.2f}, p50 "
              f"{s['served']['p50_us'] / 1000:.1f} ms, p99 {s['served']['p99_us'] / 1000:.1f} ms",
              f"- GPU busy (nvidia-smi, {s['gpu_busy_samples']} samples): {s['gpu_busy_percent']:.1f}%",
              f"- batching on {b['on']['throughput']:.1f} vs off {b['off']['throughput']:.1f} clips/s "
              f"at concurrency 16",
              "", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    for name, value, ok in [
            ("served / offline at the best batch >= 0.95", f"{ratio:.3f}", ratio >= 0.95),
            ("batching on / off at concurrency 16 >= 3x", f"{onoff:.2f}x", onoff >= 3),
            ("GPU busy > 90% served at full batches", f"{s['gpu_busy_percent']:.1f}%",
             s["gpu_busy_percent"] > 90),
            ("fp16 / fp32 offline at batch 32 >= 2x", f"{fp16_32:.2f}x", fp16_32 >= 2)]:
        lines.append(f"| {name} | {value} | {'met' if ok else 'MISSED'} |")
    if r["precision_agreement"]:
        lines += ["", "## fp16/bf16 vs fp32 (8 clips, 16x224x224, TF32 off)", "",
                  "| precision | top-1 agreement | max abs logit diff | max abs logit |", "|---|---|---|---|"]
        for p in r["precision_agreement"]:
            lines.append(f"| {p['precision']} | {p['top1_agreement']:.3f} | {p['max_abs_diff']:.5f} | "
                         f"{p['max_abs_reference']:.4f} |")
    if r["metrics"]:
        lines += ["", "## From /metrics after the served run", "", "```"] + r["metrics"][:40] + ["```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
