#!/usr/bin/env python3
"""scripts/gpu-check.sh and bench/gpu_bench.py where there is no GPU.

    gpu_check_test.py --source-dir DIR --python VENV_PYTHON fails_early
    gpu_check_test.py --source-dir DIR summary

fails_early: the check, run with CUDA hidden, stops within seconds with one
"FAIL:" line saying what is missing, and builds nothing.
summary: the report of a (synthetic) run has every table row and marks each
of the issue's four targets met or MISSED by its threshold.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def fails_early(source, python):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        # The venv's python3 (torch 2.11) first; no GPU visible to torch.
        env["PATH"] = os.path.dirname(python) + os.pathsep + env["PATH"]
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["BUILD_DIR"] = os.path.join(tmp, "build")
        env["DEPS_PREFIX"] = os.path.join(tmp, "deps")
        start = time.monotonic()
        done = subprocess.run(["bash", os.path.join(source, "scripts/gpu-check.sh"),
                               os.path.join(tmp, "out")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120)
        seconds = time.monotonic() - start
        print(done.stdout)
        check(done.returncode == 1, f"exit code 1 (got {done.returncode})")
        fails = [l for l in done.stdout.splitlines() if l.startswith("FAIL: ")]
        check(len(fails) == 1, "exactly one FAIL: line")
        check(any(m in done.stdout for m in (
            "FAIL: no nvidia-smi: this machine has no NVIDIA driver",
            "sees no CUDA device")), "the line names the missing GPU")
        check(seconds < 60, f"within a minute ({seconds:.1f} s)")
        check(not os.path.exists(env["BUILD_DIR"]), "nothing configured or built")
        check(not os.path.exists(env["DEPS_PREFIX"]), "nothing unpacked")
        check(os.path.exists(os.path.join(tmp, "out", "gpu-check.log")),
              "the log is written to OUT_DIR")


def step(clips_per_second, mean_batch=8.0):
    return {"throughput": clips_per_second, "mean_batch_size": mean_batch,
            "p50_us": 20000, "p99_us": 40000}


def offline(rates):
    return [{"batch_size": b, "clips_per_second": r, "ms_per_batch": 1000 * b / r,
             "gpu_memory_allocated_peak_bytes": b << 28} for b, r in rates]


def summary(source):
    spec = importlib.util.spec_from_file_location(
        "gpu_bench", os.path.join(source, "bench/gpu_bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    b16 = [1, 2, 4, 8, 16, 32, 64]
    fp32 = offline([(b, 100.0 * min(b, 16)) for b in b16])
    results = {
        "gpu": "NVIDIA H100 80GB HBM3, 81559 MiB, 580.00",
        "offline_16f": {"fp32": fp32,
                        "fp16": offline([(b, 250.0 * min(b, 16)) for b in b16]),
                        "bf16": offline([(b, 240.0 * min(b, 16)) for b in b16])},
        "offline_64f": {"fp32": offline([(b, 30.0 * b) for b in (1, 2, 4, 8, 16)]),
                        "fp16": offline([(b, 70.0 * b) for b in (1, 2, 4, 8, 16)])},
        "served": {"best_batch": 16, "concurrency": 48, "offline_clips_per_second": 4000.0,
                   "served": step(3900.0, 15.8), "gpu_busy_percent": 85.5,
                   "gpu_busy_samples": 60},
        "batching": {"concurrency": 16, "on": step(3000.0), "off": step(1200.0, 1)},
        "precision_agreement": [{"precision": "fp16", "clips": 8, "top1_agreement": 1.0,
                                 "max_abs_diff": 0.004, "max_abs_reference": 4.2}],
        "metrics": ['clipserve_gpu_utilization_ratio{gpu="0"} 0.93'],
    }
    text = bench.summary(results)
    print(text)
    check(text.startswith("# GPU check: NVIDIA H100 80GB HBM3"), "titled with the GPU")
    check("| 64 | 1600.0; 40.0; 16.00 |" in text, "offline row: clips/s; ms; GiB")
    check("| served / offline at the best batch >= 0.95 | 0.975 | met |" in text,
          "served/offline 0.975 met")
    check("| batching on / off at concurrency 16 >= 3x | 2.50x | MISSED |" in text,
          "batching 2.5x missed")
    check("| GPU busy > 90% served at full batches | 85.5% | MISSED |" in text,
          "busy 85.5% missed")
    check("| fp16 / fp32 offline at batch 32 >= 2x | 2.50x | met |" in text, "fp16 2.5x met")
    check("| fp16 | 1.000 | 0.00400 | 4.2000 |" in text, "precision agreement row")
    check('clipserve_gpu_utilization_ratio{gpu="0"} 0.93' in text, "scraped NVML series")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("case", choices=["fails_early", "summary"])
    a = ap.parse_args()
    if a.case == "fails_early":
        fails_early(a.source_dir, a.python)
    else:
        summary(a.source_dir)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
