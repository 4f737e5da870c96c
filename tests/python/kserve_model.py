"""What the Python protocol tests (kserve_client_test.py, tritonclient_test.py)
share: a benchmark model as its config.pbtxt says (read independently of the
server), the server's input normalisation and softmax in numpy, and running
a tool that must succeed. Imports only numpy and tests/deploy/live_util.py,
so that each test chooses its own protobuf runtime."""
import os
import re
import subprocess

import numpy as np

from live_util import Failure, die_with_parent

# Limits and names the protocol tests share.
RPC_TIMEOUT = 30.0      # seconds, every unary call
STREAM_TIMEOUT = 60.0   # seconds, a whole stream or a batch of async answers
START_TIMEOUT = 120.0   # seconds for the server to log its ports (~3 s idle)
STOP_TIMEOUT = 30.0     # seconds for it to drain and exit after SIGTERM
ATOL = 1e-4             # logits of the same clip, however sent
UNKNOWN_MODEL = "no-such-model"
UNKNOWN_VERSION = "7"


class Model:
    """What the repository's config.pbtxt says (independently of the server)."""

    def __init__(self, repo, name):
        with open(os.path.join(repo, name, "config.pbtxt")) as f:
            text = f.read()

        def one(pattern, what):
            m = re.search(pattern, text, re.S)
            if not m:
                raise Failure(f"{name}/config.pbtxt: no {what}")
            return m

        def dims(block):
            return [int(d) for d in re.search(r"dims:\s*\[([^\]]*)\]", block).group(1).split(",")]

        self.name = name
        self.backend = one(r'backend:\s*"([^"]*)"', "backend").group(1)
        self.max_batch_size = int(one(r"max_batch_size:\s*(\d+)", "max_batch_size").group(1))
        inp = one(r"input\s*\{([^}]*)\}", "input").group(1)
        out = one(r"output\s*\{([^}]*)\}", "output").group(1)
        self.input_name = re.search(r'name:\s*"([^"]*)"', inp).group(1)
        self.logits_name = re.search(r'name:\s*"([^"]*)"', out).group(1)
        self.c, self.t, self.h, self.w = dims(inp)
        (self.classes,) = dims(out)
        # dynamic_batching.priority_levels, 3 when the config leaves it out.
        levels = re.search(r"priority_levels:\s*(\d+)", text)
        self.levels = int(levels.group(1)) if levels else 3
        delay = re.search(r"max_queue_delay_microseconds:\s*(\d+)", text)
        self.max_queue_delay_us = int(delay.group(1)) if delay else 0

    def u8_shape(self, b):
        return [b, self.t, self.h, self.w, self.c]

    def f32_shape(self, b):
        return [b, self.c, self.t, self.h, self.w]


def to_fp32(frames):
    """UINT8 [B, T, H, W, C] -> the server's normalisation, FP32 [B, C, T, H, W]
    (runtime/torch_backend.cc: x / 127.5 - 1)."""
    return (np.transpose(frames, (0, 4, 1, 2, 3)).astype(np.float32) / np.float32(127.5)
            - np.float32(1.0))


def softmax(logits):
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def max_diff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def run_tool(cmd, what, timeout=120):
    """Runs `cmd` to completion (bounded); Failure with its output unless it
    exits 0."""
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, preexec_fn=die_with_parent)
    if p.returncode != 0:
        raise Failure(f"{what} failed with {p.returncode}: {' '.join(cmd)}\n"
                      f"{p.stdout.decode(errors='replace')}")
