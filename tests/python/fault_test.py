#!/usr/bin/python3
"""Fault injection against the real clipserve binary: clients that go away
mid-call, clients that never read their answers, thousands of idle
connections, and a flood of oversized and malformed messages. In every case
the server keeps serving well-formed requests (with the right answers), its
memory and descriptors stay bounded, and every request it accepted is
answered exactly once: the change of clipserve_requests_total, by model and
code, is checked against what the test knows it sent, and
clipserve_inflight_requests returns to 0.

  fault_test.py --server CLIPSERVE --bench-repo CLIPSERVE_BENCH_REPO
      [--source-dir DIR]

One server serves the whole file (LibTorch and the models load once), on
127.0.0.1 with ports 0, --max-request-bytes 1 MiB, --grpc-max-connection-age 0
and --stream-idle-timeout-seconds 600 (so that no GOAWAY or idle timeout of
the server's own makes a count depend on the machine's speed). Its model
repository: clipserve-bench-repo's "micro" (4 x 16 x 16 clips, batches up to
8) and "tiny-b8" (16 x 112 x 112: a real computation, 0.6 MB per UINT8
clip), and two models with micro's weights written by this test:

  held   max_batch_size 128, max_queue_delay 20 s: a request stays queued
         until 128 clips fill a batch, so the test decides when queued
         requests run;
  flood  max_batch_size 8, max_queue_size 8192: the target of the clients
         that never read, so that they cannot fill micro's queue.

1. Disconnects mid-call.
   a. 100 calls (Classify and ModelInfer, on 4 connections) to "held"; once
      clipserve_inflight_requests{model="held"} is 100 (all accepted, all
      queued, none answered) the 4 connections are closed. Then 100 calls
      cancelled right after they are sent. One ModelInfer request of 128
      clips then fills a batch of "held" (the right logits, batch size 128),
      which answers every cancelled call queued before it:
      requests_total{held} grows by exactly 1 + 100 + x, x (the immediately
      cancelled calls that reached a handler) in 0..100, codes OK and
      CANCELLED only (OK: a call that ran before the server saw its
      cancellation).
   b. 24 tiny-b8 calls on one connection; once all 24 are accepted, a batch
      is computing and others are queued, the connection is closed: the
      calls answered before the close have the right logits;
      requests_total{tiny-b8} grows by exactly 24, OK (computed, also for a
      client that had gone) plus CANCELLED (dropped from the queue).
   c. 42 raw TCP connections that send a third of the HTTP/2 preface, half a
      SETTINGS frame, half a HEADERS frame, or a whole HEADERS frame of
      ModelInfer, Classify, ModelStreamInfer or ClassifyStream and half of
      its DATA frame, then close (FIN or RST): no request is counted, no
      stream stays open, the server's descriptors come back. A control
      connection that sends a whole request with the same hand-made frames
      is answered (counted OK once), so the halves are what the server saw.
   Then good requests on every model get the right answers; the total over
   every model and code grew by exactly the requests accepted; inflight and
   queue depth are 0 everywhere.

2. Clients that never read their answers (HTTP/2 windows of 64 KiB: no
   BDP probing on their channels): 2 ModelStreamInfer streams that write
   800 requests each, and 2 ClassifyStream streams (RAW_RGB, a window at
   every frame, top_k 400: ~4 KB answers) that push 400 frames each; none
   ever reads. Meanwhile other clients (unary ModelInfer and Classify, and
   a ModelStreamInfer stream that reads) get the right answers within their
   deadlines. The server stops reading a ModelStreamInfer stream while 64
   of its answers wait unwritten, so it reads and answers fewer than half
   of the 1600 stream requests, the rest held back by HTTP/2 flow control
   (requests_total{flood} grows by exactly what was
   read, all OK, inflight 0); every window of the pushed streams is accounted
   for (classified or answer_dropped, and answer_dropped > 0: the cap of 64
   unread answers per ClassifyStream holds); RSS stays under the bound
   below. Cancelling the four streams ends them: clipserve_streams_active 0,
   clipserve_streams_ended_total +2, and nothing is counted twice.

3. 2000 idle connections: raw TCP connections that send the HTTP/2 client
   preface and an empty SETTINGS frame, then nothing. Each gets the
   server's SETTINGS; the server holds a descriptor for each
   (/proc/PID/fd); a new gRPC client still gets the right answers; RSS
   stays under the bound; once they are closed the server's descriptors
   return to within 16 of where they were. This process raises its
   RLIMIT_NOFILE soft limit before the server starts (the server inherits
   it) and fails with a clear message if the hard limit is too low.

4. A flood, 25 requests at a time in a shuffled order: 500 requests over
   --max-request-bytes (RESOURCE_EXHAUSTED "Received message larger than
   max", from gRPC: never counted), 300 with malformed tensors (wrong byte
   counts, dtypes, ranks, shapes, batch sizes: INVALID_ARGUMENT with the
   server's exact message), 40 whose bytes are no protobuf message (sent
   through a generic channel: UNIMPLEMENTED with no message, which is what
   gRPC's callback API answers when it cannot deserialise a request; never
   counted), and 80 good ones, all OK with the right logits. Then a
   ModelStreamInfer stream killed by an oversized message while its good
   request is queued (RESOURCE_EXHAUSTED; the request is answered once), a
   ModelStreamInfer stream that sends garbage bytes after a good request
   (the good one answered right; the stream ends, nothing more counted),
   and a ClassifyStream that starts with garbage bytes (INVALID_ARGUMENT).
   requests_total grows by exactly the good requests (OK) and 300
   INVALID_ARGUMENT, plus the killed stream's one.

Memory bounds, on the server's VmRSS (/proc/PID/status), as growth over its
value before the case:
  case 2: 96 MiB, whatever the clients that do not read send: a
          ModelStreamInfer stream holds at most 64 unwritten answers, a
          ClassifyStream at most 64 unread answers;
  case 3: 2000 x 96 KiB (one idle connection costs gRPC its transport,
          HPACK tables and read buffer: ~41 KiB measured on an ASan build);
  case 4: 96 MiB + 2 x 25 requests in flight x 1 MiB (each may be buffered
          whole before it is refused, and copied once);
plus, on a sanitizer build (VmSize over 1 TiB: ASan's shadow mapping), ASan's
quarantine of freed memory (256 MiB, or ASAN_OPTIONS' quarantine_size_mb),
which an ASan process keeps resident whatever the program does.

On SIGTERM the server must drain and exit 0, and its log must hold no
AddressSanitizer, LeakSanitizer, ThreadSanitizer or UBSan report (printed
in full on failure).

Everything it starts is stopped at the end, also on failure or a signal
(the server gets SIGKILL should this script die). Loopback only; every wait
and RPC is bounded; asynchronous effects are awaited by polling with a
limit, never by a fixed sleep. ~15 s on an idle 2-core machine with an ASan
build, ~40 s with both cores busy. Exit 0: pass, 1: fail. Nothing is
skipped.
"""
import os

# Before any import of google.protobuf: see kserve_client_test.py.
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"

import argparse  # noqa: E402
import importlib  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
import live_util  # noqa: E402
from live_util import Children, Failure, check, install_signal_handlers, log  # noqa: E402
sys.path.insert(0, HERE)
from kserve_model import (ATOL, START_TIMEOUT, STOP_TIMEOUT, Model, max_diff,  # noqa: E402
                          run_tool)

MAX_REQUEST_BYTES = 1 << 20
RPC_TIMEOUT = 60.0      # every unary call (an ASan server on a loaded machine is slow)
WAIT = 90.0             # every poll for an asynchronous effect
HELD = "held"
FLOOD = "flood"
MICRO = "micro"
HEAVY = "tiny-b8"
HELD_BATCH = 128
HELD_DELAY_US = 20_000_000

# Case 1
N_CLOSED = 100          # calls whose connection is closed while they are queued
N_CLOSE_CHANNELS = 4
N_CANCELLED = 100       # calls cancelled right after they are sent
N_HEAVY = 24            # tiny-b8 calls, 3 batches of 8, connection closed mid-way
N_HALF = 6              # raw connections per kind of half frame
# Case 2
N_STREAM_REQUESTS = 800  # per ModelStreamInfer client that never reads
N_NONREADERS = 2
N_PUSH_FRAMES = 400      # per ClassifyStream client that never reads
N_PUSHERS = 2
MAX_PENDING_ANSWERS = 64  # StreamOptions::max_pending_answers
# Case 3
N_IDLE = 2000
FD_SLACK = 16
# Case 4
N_OVERSIZED = 500
N_MALFORMED = 300
N_GARBAGE = 40
N_GOOD = 80
WAVE = 25

MIB = 1 << 20
ASAN_QUARANTINE_DEFAULT_MB = 256
CASE2_BASE = 96 * MIB
CASE3_PER_CONN = 96 * 1024
CASE4_BASE = 96 * MIB

STATUS = grpc.StatusCode


# ---- generated code ---------------------------------------------------------

class Pb:
    """The generated modules of the three protos the test speaks."""


def compile_protos(source_dir, out_dir):
    proto_root = os.path.join(source_dir, "proto")
    files = [os.path.join(proto_root, *p.split("/")) for p in (
        "inference/grpc_service.proto", "inference/model_config.proto",
        "clipserve/v1/video_classifier.proto")]
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen)
    run_tool([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
              f"--python_out={gen}", f"--grpc_python_out={gen}"] + files,
             "grpc_tools.protoc (inference/*.proto, clipserve/v1/video_classifier.proto)")
    sys.path.insert(0, gen)
    pb = Pb()
    pb.inf = importlib.import_module("inference.grpc_service_pb2")
    pb.inf_grpc = importlib.import_module("inference.grpc_service_pb2_grpc")
    pb.vc = importlib.import_module("clipserve.v1.video_classifier_pb2")
    pb.vc_grpc = importlib.import_module("clipserve.v1.video_classifier_pb2_grpc")
    return pb


# ---- the server's side: metrics and /proc -----------------------------------

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Scrape:
    def __init__(self, text):
        self.samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            if not m:
                continue
            labels = dict(LABEL_RE.findall(m.group(2) or ""))
            self.samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))

    def sum(self, name, **match):
        return sum(v for labels, v in self.samples.get(name, [])
                   if all(labels.get(k) == w for k, w in match.items()))

    def requests(self):
        """{(model, code): count} of clipserve_requests_total."""
        out = {}
        for labels, v in self.samples.get("clipserve_requests_total", []):
            key = (labels.get("model", ""), labels.get("code", ""))
            out[key] = out.get(key, 0) + v
        return out


def delta(before, after):
    """The non-zero changes between two requests() dicts."""
    keys = set(before) | set(after)
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(keys)
            if after.get(k, 0) != before.get(k, 0)}


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise Failure(f"/proc/{pid}/status has no {field}")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def max_open_files(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise Failure(f"/proc/{pid}/limits has no 'Max open files'")


class RssSampler(threading.Thread):
    """Samples the server's VmRSS every 20 ms; peak() since the last reset."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.lock = threading.Lock()
        self._peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.02):
            try:
                rss = proc_status(self.pid, "VmRSS")
            except (OSError, Failure):
                return
            with self.lock:
                self._peak = max(self._peak, rss)

    def reset(self, value):
        with self.lock:
            self._peak = value

    def peak(self):
        with self.lock:
            return self._peak


def sanitizer_report(log_path):
    """The first sanitizer report in the server's log, or None."""
    with open(log_path, errors="replace") as f:
        lines = f.readlines()
    pat = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|"
                     r"MemorySanitizer)|WARNING: ThreadSanitizer|runtime error:")
    for i, line in enumerate(lines):
        if pat.search(line):
            return "".join(lines[max(0, i - 2):i + 120])
    return None


class Server:
    def __init__(self, proc, port, metrics_port, log_path):
        self.proc, self.port, self.metrics_port, self.log_path = proc, port, metrics_port, log_path
        self.pid = proc.pid
        self.target = f"127.0.0.1:{port}"

    def alive(self):
        if self.proc.poll() is not None:
            report = sanitizer_report(self.log_path)
            raise Failure(f"clipserve exited with {self.proc.returncode}"
                          + (f"; sanitizer report:\n{report}" if report else ""))

    def scrape(self):
        self.alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=30) as r:
            return Scrape(r.read().decode())

    def requests(self):
        return self.scrape().requests()

    def rss(self):
        return proc_status(self.pid, "VmRSS")

    def fds(self):
        return open_fds(self.pid)

    def wait_gauge(self, what, name, want, **labels):
        """Polls the gauge `name` until it equals `want`; returns the scrape."""
        last = [None]

        def ok():
            s = self.scrape()
            last[0] = s.sum(name, **labels)
            return s if last[0] == want else None

        try:
            return live_util.wait_for(what, ok, WAIT, interval=0.05)
        except Failure as e:
            raise Failure(f"{e} ({name}{labels} = {last[0]}, want {want})")


def new_channel(server, small_window=False):
    """A channel with a connection of its own (no subchannel shared with the
    other channels), ready. small_window: no BDP probing, so the client's
    transport takes no more than HTTP/2's initial 64 KiB window of answers
    that the application does not read (then the server must hold them)."""
    options = [("grpc.use_local_subchannel_pool", 1),
               ("grpc.max_send_message_length", -1),
               ("grpc.max_receive_message_length", -1)]
    if small_window:
        options.append(("grpc.http2.bdp_probe", 0))
    ch = grpc.insecure_channel(server.target, options=options)
    grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT)
    return ch


# ---- requests and answers ---------------------------------------------------

class Api:
    def __init__(self, pb, channel):
        self.pb = pb
        self.channel = channel
        self.kserve = pb.inf_grpc.GRPCInferenceServiceStub(channel)
        self.vc = pb.vc_grpc.VideoClassifierStub(channel)
        # The same methods taking and giving bytes: pre-serialised requests
        # (cheap to send by the hundred) and bytes that are no message.
        self.raw_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self.raw_classify = channel.unary_unary("/clipserve.v1.VideoClassifier/Classify")


def kserve_request(pb, model, clips, rid="", logits_only=True):
    """ModelInferRequest: `clips` UINT8 [B, T, H, W, 3], raw."""
    r = pb.inf.ModelInferRequest(model_name=model, id=rid)
    r.inputs.add(name="clip", datatype="UINT8", shape=list(clips.shape))
    r.raw_input_contents.append(np.ascontiguousarray(clips).tobytes())
    if logits_only:
        r.outputs.add(name="logits")
    return r


def classify_request(pb, model, clip):
    """ClassifyRequest: `clip` UINT8 [T, H, W, 3], logits returned."""
    return pb.vc.ClassifyRequest(
        model_name=model, return_logits=True, top_k=3,
        clip=pb.vc.Tensor(dtype=pb.vc.UINT8, shape=list(clip.shape),
                          data=np.ascontiguousarray(clip).tobytes()))


def kserve_logits(response):
    for i, t in enumerate(response.outputs):
        if t.name == "logits":
            shape = list(t.shape)
            return np.frombuffer(response.raw_output_contents[i], dtype="<f4").reshape(shape)
    raise Failure(f"ModelInfer answer without logits: {[t.name for t in response.outputs]}")


def check_kserve_answer(what, response, ref_rows):
    got = kserve_logits(response)
    if got.shape != ref_rows.shape:
        raise Failure(f"{what}: logits {got.shape}, want {ref_rows.shape}")
    d = max_diff(got, ref_rows)
    if d >= ATOL:
        raise Failure(f"{what}: logits differ from the reference by {d:.2e}")
    return d


def check_classify_answer(what, response, ref_row):
    got = np.array(response.logits, dtype=np.float32)
    if got.shape != ref_row.shape:
        raise Failure(f"{what}: {got.shape[0]} logits, want {ref_row.shape[0]}")
    d = max_diff(got, ref_row)
    top = [c.class_index for c in response.classes]
    want = [int(i) for i in np.argsort(-ref_row.astype(np.float64), kind="stable")[:len(top)]]
    if d >= ATOL or len(top) != 3 or top[0] != want[0]:
        raise Failure(f"{what}: logits differ by {d:.2e} or top classes {top} (want {want})")
    return d


def rpc_code(future, timeout=RPC_TIMEOUT):
    """The final status code of a call future (bounded)."""
    try:
        future.result(timeout=timeout)
        return STATUS.OK
    except grpc.FutureTimeoutError:
        raise Failure(f"a call is still unanswered after {timeout} s")
    except grpc.FutureCancelledError:
        return STATUS.CANCELLED
    except grpc.RpcError as e:
        return e.code()


def rpc_error(future, timeout=RPC_TIMEOUT):
    """(code, details) of a call future that must fail."""
    try:
        future.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise Failure(f"a call is still unanswered after {timeout} s")
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return STATUS.OK, ""


class Ctx:
    """What the cases share: the server, the generated code, the clips and
    their reference logits, the main client."""


def good_round(ctx, api, n, tag):
    """n ModelInfer and n Classify calls on micro, concurrently; each must
    succeed with the reference logits. Returns (calls, worst seconds)."""
    pb = ctx.pb
    t0 = time.monotonic()
    futs = []
    for i in range(n):
        k = i % len(ctx.clips)
        futs.append(("infer", k, api.kserve.ModelInfer.future(
            kserve_request(pb, MICRO, ctx.clips[k:k + 1], rid=f"{tag}-{i}"), timeout=RPC_TIMEOUT)))
        futs.append(("classify", k, api.vc.Classify.future(
            classify_request(pb, MICRO, ctx.clips[k]), timeout=RPC_TIMEOUT)))
    worst = 0.0
    for kind, k, f in futs:
        try:
            r = f.result(timeout=RPC_TIMEOUT + 5)
        except grpc.RpcError as e:
            raise Failure(f"{tag}: a well-formed {kind} failed: {e.code().name}: {e.details()}")
        except grpc.FutureTimeoutError:
            raise Failure(f"{tag}: a well-formed {kind} unanswered after {RPC_TIMEOUT} s")
        if kind == "infer":
            check_kserve_answer(f"{tag} ModelInfer", r, ctx.ref[k:k + 1])
        else:
            check_classify_answer(f"{tag} Classify", r, ctx.ref[k])
        worst = max(worst, time.monotonic() - t0)
    return 2 * n, worst


def held_batch(ctx, api, rid=""):
    """One ModelInfer request of HELD_BATCH clips (micro's 8, repeated) to
    "held": it fills a batch at once. Checks the answer; returns it."""
    reps = HELD_BATCH // len(ctx.clips)
    r = api.kserve.ModelInfer(kserve_request(ctx.pb, HELD, np.concatenate([ctx.clips] * reps),
                                             rid=rid), timeout=RPC_TIMEOUT)
    d = check_kserve_answer(f"{HELD} batch of {HELD_BATCH}", r,
                            np.concatenate([ctx.ref] * reps))
    size = r.parameters["batch_size"].int64_param
    if size != HELD_BATCH:
        raise Failure(f"{HELD}: a request of {HELD_BATCH} clips ran in a batch of {size}")
    return d


def expect_delta(what, got, want):
    check(got == want, f"{what}: clipserve_requests_total grew by exactly {want} "
                       f"(got {got})")


def ended_by_code(before, after):
    """The non-zero changes of clipserve_streams_ended_total, by code."""
    out = {}
    for labels, v in after.samples.get("clipserve_streams_ended_total", []):
        d = v - before.sum("clipserve_streams_ended_total", **labels)
        if d:
            out[labels.get("code", "")] = int(d)
    return out


def inflight_zero(ctx, what):
    s = ctx.server.wait_gauge(f"{what}: inflight back to 0", "clipserve_inflight_requests", 0)
    check(s.sum("clipserve_queue_depth") == 0,
          f"{what}: clipserve_inflight_requests and clipserve_queue_depth 0 on every model")
    return s


# ---- raw HTTP/2 -------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_SETTINGS = 0, 1, 4
END_STREAM, END_HEADERS = 0x1, 0x4


def h2_frame(ftype, flags, stream_id, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream_id) + payload


SETTINGS = h2_frame(H2_SETTINGS, 0, 0, b"")


def hpack_literal(name, value):
    """A literal header field without indexing, new name, no Huffman."""
    def s(x):
        b = x.encode()
        assert len(b) < 127
        return bytes([len(b)]) + b
    return b"\x00" + s(name) + s(value)


def grpc_headers(path, port, stream_id=1):
    block = b"".join(hpack_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"), (":path", path),
        (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
        ("te", "trailers")))
    return h2_frame(H2_HEADERS, END_HEADERS, stream_id, block)


def grpc_data(message, end_stream, stream_id=1):
    payload = b"\x00" + struct.pack(">I", len(message)) + message
    return h2_frame(H2_DATA, END_STREAM if end_stream else 0, stream_id, payload)


def raw_connect(port, payload=b"", timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if payload:
        s.sendall(payload)
    return s


def raw_close(s, reset):
    if reset:  # RST instead of FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---- case 1: disconnects mid-call -------------------------------------------

def case_disconnects(ctx):
    pb, server = ctx.pb, ctx.server
    log("== case 1: clients that disconnect mid-call")
    start = server.requests()
    accepted = 0  # requests the test knows the server took, besides x below

    # a. Connections closed while their calls are queued in "held".
    before = server.requests()
    fds_a0 = server.fds()
    chans = [new_channel(server) for _ in range(N_CLOSE_CHANNELS)]
    apis = [Api(pb, ch) for ch in chans]
    futs = []
    for i in range(N_CLOSED):
        a, k = apis[i % N_CLOSE_CHANNELS], i % len(ctx.clips)
        if i % 2:
            futs.append(a.vc.Classify.future(classify_request(pb, HELD, ctx.clips[k]),
                                             timeout=RPC_TIMEOUT))
        else:
            futs.append(a.kserve.ModelInfer.future(
                kserve_request(pb, HELD, ctx.clips[k:k + 1]), timeout=RPC_TIMEOUT))
    server.wait_gauge(f"all {N_CLOSED} calls queued in {HELD}",
                      "clipserve_inflight_requests", N_CLOSED, model=HELD)
    check(not any(f.done() for f in futs),
          f"{N_CLOSED} calls to {HELD} accepted and queued (inflight {N_CLOSED}), none answered")
    for ch in chans:
        ch.close()
    codes = [rpc_code(f) for f in futs]
    check(all(c == STATUS.CANCELLED for c in codes),
          f"their {N_CLOSE_CHANNELS} connections closed: the clients' calls end CANCELLED "
          f"(got {sorted(set(c.name for c in codes))})")
    # The server keeps a closed connection's descriptor while calls of it are
    # unanswered: here until the batch below reaches them (measured, shown
    # in the summary).
    fds_closed = server.fds()

    # Calls cancelled right after they are sent (the connection is up first,
    # so that they do leave).
    ch = new_channel(server)
    api = Api(pb, ch)
    cancelled = []
    for i in range(N_CANCELLED):
        k = i % len(ctx.clips)
        if i % 2:
            f = api.vc.Classify.future(classify_request(pb, HELD, ctx.clips[k]),
                                       timeout=RPC_TIMEOUT)
        else:
            f = api.kserve.ModelInfer.future(kserve_request(pb, HELD, ctx.clips[k:k + 1]),
                                             timeout=RPC_TIMEOUT)
        f.cancel()
        cancelled.append(f)
    codes = [rpc_code(f) for f in cancelled]
    check(all(c == STATUS.CANCELLED for c in codes),
          f"{N_CANCELLED} calls cancelled right after they were sent end CANCELLED")

    # One request of HELD_BATCH clips fills a batch of "held": it runs, and the
    # cancelled requests queued before it are answered.
    d = held_batch(ctx, ctx.api, rid="flush")
    check(True, f"a ModelInfer request of {HELD_BATCH} clips to {HELD} runs as a batch of "
                f"{HELD_BATCH} with the reference logits (max diff {d:.1e})")
    ch.close()
    inflight_zero(ctx, f"{HELD} after the closed and cancelled calls")
    fds = live_util.wait_for("the closed connections' descriptors to go",
                             lambda: (lambda n: n if n <= fds_a0 else None)(server.fds()), WAIT,
                             interval=0.05)
    check(True, f"once their calls are answered, the closed connections' descriptors go: "
                f"{fds_a0} before, {fds_closed} after the close, {fds} now")
    ctx.numbers["case1 server fds: before the 4 connections / just after closing them / "
                "after their queued calls were answered"] = f"{fds_a0} / {fds_closed} / {fds}"
    got = delta(before, server.requests())
    ok, canc = got.get((HELD, "OK"), 0), got.get((HELD, "CANCELLED"), 0)
    x = ok + canc - 1 - N_CLOSED
    # A call cancelled right after it was sent either never reached a
    # handler (not counted), or did, and then is answered once: CANCELLED
    # when the server saw the cancellation before the call's batch formed,
    # else OK (it ran in a batch of its own in front of the big request,
    # which did not fit beside it). The same holds for the calls of the
    # closed connections, all of which the server took (inflight was
    # N_CLOSED); the wait for their descriptors above makes CANCELLED the
    # rule for them.
    check(set(got) <= {(HELD, "OK"), (HELD, "CANCELLED")} and 0 <= x <= N_CANCELLED
          and ok >= 1,
          f"{HELD}: requests_total grew by exactly 1 + {N_CLOSED} + x: the batch, the "
          f"{N_CLOSED} calls of the closed connections, and x = {x} of the {N_CANCELLED} "
          f"immediately cancelled calls that reached the server; {canc} CANCELLED, "
          f"{ok - 1} besides the batch OK (ran before the server saw their cancellation) "
          f"(got {got})")
    ctx.numbers["case1 held, closed + immediately cancelled"] = (
        f"{N_CLOSED} closed + {x} of {N_CANCELLED} immediately cancelled reached the server: "
        f"{canc} CANCELLED, {ok - 1} computed before the server saw the cancellation")
    accepted += N_CLOSED + x + 1

    # b. A connection closed while its tiny-b8 calls compute and queue.
    before = server.requests()
    hc = new_channel(server)
    ha = Api(pb, hc)
    futs = []
    for i in range(N_HEAVY):
        if i % 2:
            futs.append(ha.vc.Classify.future(classify_request(pb, HEAVY, ctx.heavy_clip[0]),
                                              timeout=RPC_TIMEOUT))
        else:
            futs.append(ha.kserve.ModelInfer.future(
                kserve_request(pb, HEAVY, ctx.heavy_clip), timeout=RPC_TIMEOUT))
    seen = {}

    def computing_and_queued():
        s = server.scrape()
        answered = sum(v for (m, _), v in delta(before, s.requests()).items() if m == HEAVY)
        inflight = s.sum("clipserve_inflight_requests", model=HEAVY)
        depth = s.sum("clipserve_queue_depth", model=HEAVY)
        seen.update(answered=answered, inflight=inflight, depth=depth)
        if answered + inflight > N_HEAVY:
            raise Failure(f"{HEAVY}: {answered} answered + {inflight} in flight > "
                          f"{N_HEAVY} sent")
        return answered + inflight == N_HEAVY and inflight > depth > 0

    live_util.wait_for(f"all {N_HEAVY} {HEAVY} calls accepted, a batch computing and "
                       f"others queued", computing_and_queued, WAIT, interval=0.02)
    hc.close()
    log(f"closed the {HEAVY} connection with {seen['answered']:.0f} answered, "
        f"{seen['inflight'] - seen['depth']:.0f} computing, {seen['depth']:.0f} queued")
    client_ok = 0
    for i, f in enumerate(futs):
        c = rpc_code(f)
        if c == STATUS.OK:
            client_ok += 1
            if i % 2:
                check_classify_answer(f"{HEAVY} Classify", f.result(), ctx.heavy_ref[0])
            else:
                check_kserve_answer(f"{HEAVY} ModelInfer", f.result(), ctx.heavy_ref)
        elif c != STATUS.CANCELLED:
            raise Failure(f"{HEAVY} call {i}: {c.name}, want OK or CANCELLED")
    inflight_zero(ctx, f"{HEAVY} after its connection closed")
    got = delta(before, server.requests())
    ok, canc = got.get((HEAVY, "OK"), 0), got.get((HEAVY, "CANCELLED"), 0)
    check(set(got) <= {(HEAVY, "OK"), (HEAVY, "CANCELLED")} and ok + canc == N_HEAVY
          and ok >= client_ok,
          f"{HEAVY}: requests_total grew by exactly {N_HEAVY}: {ok} OK ({client_ok} answered "
          f"before the close with the reference logits, {ok - client_ok} computed after the "
          f"client left) + {canc} CANCELLED (dropped from the queue) (got {got})")
    ctx.numbers["case1 tiny-b8 at close"] = (f"{client_ok} answered, {ok - client_ok} computed "
                                             f"for nobody, {canc} cancelled in the queue")
    accepted += N_HEAVY

    # c. Raw connections that stop in the middle of a frame.
    before = server.requests()
    scrape0 = server.scrape()
    fds0 = server.fds()
    port = server.port
    infer_msg = kserve_request(pb, MICRO, ctx.clips[:1]).SerializeToString()
    classify_msg = classify_request(pb, MICRO, ctx.clips[0]).SerializeToString()
    open_msg = pb.vc.StreamRequest(open=pb.vc.StreamOpen(
        model_name=MICRO, input=pb.vc.StreamOpen.RAW_RGB)).SerializeToString()
    hello = PREFACE + SETTINGS
    paths = {
        "ModelInfer": ("/inference.GRPCInferenceService/ModelInfer", infer_msg),
        "Classify": ("/clipserve.v1.VideoClassifier/Classify", classify_msg),
        "ModelStreamInfer": ("/inference.GRPCInferenceService/ModelStreamInfer", infer_msg),
        "ClassifyStream": ("/clipserve.v1.VideoClassifier/ClassifyStream", open_msg),
    }

    # Control: the same hand-made frames, whole, make a request the server
    # answers (so the halves below are what the server saw).
    path, msg = paths["ModelInfer"]
    s = raw_connect(port, hello + grpc_headers(path, port) + grpc_data(msg, True))
    server.wait_gauge("the hand-made ModelInfer request answered", "clipserve_requests_total",
                      before.get((MICRO, "OK"), 0) + 1, model=MICRO, code="OK")
    raw_close(s, reset=False)
    accepted += 1
    before = server.requests()

    kinds = [("a third of the client preface", PREFACE[:8]),
             ("the preface and half a SETTINGS frame", PREFACE + SETTINGS[:5]),
             ("half a HEADERS frame", hello + grpc_headers(paths["ModelInfer"][0], port)[:20])]
    for name, (path, msg) in paths.items():
        data = grpc_data(msg, end_stream=True)
        kinds.append((f"a {name} HEADERS frame and half its DATA frame",
                      hello + grpc_headers(path, port) + data[:9 + (len(data) - 9) // 2]))
    n_raw = 0
    for name, payload in kinds:
        socks = [raw_connect(port, payload) for _ in range(N_HALF)]
        for i, s in enumerate(socks):
            raw_close(s, reset=bool(i % 2))
        n_raw += len(socks)
    log(f"{n_raw} raw connections sent {len(kinds)} kinds of partial frames and closed "
        f"(half with FIN, half with RST)")
    live_util.wait_for("the server to close the raw connections' descriptors",
                       lambda: server.fds() <= fds0 + 2, WAIT)
    s = server.wait_gauge("no live stream left open", "clipserve_streams_active", 0)
    check(delta(before, s.requests()) == {},
          f"{n_raw} connections cut mid-frame: no request counted (got "
          f"{delta(before, s.requests())}), descriptors back to {server.fds()} (were {fds0})")
    # How many of the ClassifyStream HEADERS the server took before the
    # connection went is up to the kernel and gRPC (data in front of an RST
    # may be discarded), so their count is known only once it stops
    # changing: waited for here, so that no late one lands in a later
    # case's accounting.
    settled = {"value": None, "since": 0.0}

    def ended_settled():
        v = server.scrape().sum("clipserve_streams_ended_total")
        now = time.monotonic()
        if v != settled["value"]:
            settled.update(value=v, since=now)
        return now - settled["since"] >= 1.0
    live_util.wait_for("the raw ClassifyStream calls to be counted", ended_settled, WAIT,
                       interval=0.1)
    ended = settled["value"] - scrape0.sum("clipserve_streams_ended_total")
    check(0 <= ended <= N_HALF, f"ClassifyStream HEADERS then gone: at most {N_HALF} streams "
                                f"ended (got {ended:.0f}), none active")

    # Good requests on every model still succeed.
    n, _ = good_round(ctx, ctx.api, 8, "after disconnects")
    accepted += n
    r = ctx.api.kserve.ModelInfer(kserve_request(pb, HEAVY, ctx.heavy_clip), timeout=RPC_TIMEOUT)
    check_kserve_answer("tiny-b8 after disconnects", r, ctx.heavy_ref)
    r = ctx.api.vc.Classify(classify_request(pb, HEAVY, ctx.heavy_clip[0]), timeout=RPC_TIMEOUT)
    check_classify_answer("tiny-b8 after disconnects", r, ctx.heavy_ref[0])
    held_batch(ctx, ctx.api)
    accepted += 3
    check(True, f"after the disconnects, {n} micro calls, 2 tiny-b8 and a held batch of "
                f"{HELD_BATCH} succeed with the reference logits")
    inflight_zero(ctx, "after case 1")
    total = sum(delta(start, server.requests()).values())
    expect_delta("case 1, every model and code", total, accepted)


# ---- case 2: clients that never read ----------------------------------------

class Feeder:
    """A request iterator for a streaming call: `items`, then it waits until
    released (the stream stays open, never half-closed)."""

    def __init__(self, items):
        self.items = items
        self.release = threading.Event()
        self.sent = 0

    def __iter__(self):
        for it in self.items:
            yield it
            self.sent += 1
        self.release.wait(WAIT * 4)


def case_nonreaders(ctx):
    pb, server = ctx.pb, ctx.server
    log("== case 2: clients that never read their answers")
    start = server.requests()
    s0 = server.scrape()
    rss0 = server.rss()
    ctx.sampler.reset(rss0)
    rng = np.random.default_rng(7)

    # ModelStreamInfer clients that write and never read (each on its own
    # connection). The answers carry logits and probabilities: ~3.3 KB.
    calls, feeders, chans = [], [], []
    req = kserve_request(pb, FLOOD, ctx.clips[:1], logits_only=False)
    for j in range(N_NONREADERS):
        ch = new_channel(server, small_window=True)
        feeder = Feeder([req] * N_STREAM_REQUESTS)
        calls.append(pb.inf_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            iter(feeder), timeout=WAIT * 6))
        feeders.append(feeder)
        chans.append(ch)
    # ClassifyStream clients that push frames and never read: a window at
    # every frame (stride 1), 400 classes per answer.
    opened = pb.vc.StreamRequest(open=pb.vc.StreamOpen(
        model_name=FLOOD, input=pb.vc.StreamOpen.RAW_RGB, stride_frames=1, top_k=400,
        every_window=True))
    frames = [pb.vc.StreamRequest(frame=pb.vc.RawFrame(
        width=16, height=16, rgb=rng.integers(0, 256, 16 * 16 * 3, dtype=np.uint8).tobytes()))
        for _ in range(N_PUSH_FRAMES)]
    for j in range(N_PUSHERS):
        ch = new_channel(server, small_window=True)
        feeder = Feeder([opened] + frames)
        calls.append(pb.vc_grpc.VideoClassifierStub(ch).ClassifyStream(
            iter(feeder), timeout=WAIT * 6))
        feeders.append(feeder)
        chans.append(ch)

    # Meanwhile: well-formed clients, unary and a stream that reads.
    worst, n_good = 0.0, 0
    for round_ in range(3):
        n, w = good_round(ctx, ctx.api, 10, f"beside the non-readers, round {round_}")
        n_good += n
        worst = max(worst, w)

    windows = N_PUSHERS * (N_PUSH_FRAMES - 3)  # micro's T is 4, stride 1
    last = {}

    def settled():
        s = server.scrape()
        answered = sum(v for (m, _), v in delta(start, s.requests()).items() if m == FLOOD)
        steady = last.get("answered") == answered
        last.update(
            answered=answered,
            frames=s.sum("clipserve_stream_frames_total", model=FLOOD),
            windows=s.sum("clipserve_stream_windows_total", model=FLOOD)
            - s0.sum("clipserve_stream_windows_total", model=FLOOD))
        return (steady and answered > 0
                and s.sum("clipserve_inflight_requests", model=FLOOD) == 0
                and last["frames"] == N_PUSHERS * N_PUSH_FRAMES
                and last["windows"] == windows and s)

    try:
        s = live_util.wait_for("the non-readers' requests answered as far as the server reads "
                               "them, and every window of the pushed streams",
                               settled, WAIT * 2, interval=1.0)
    except Failure as e:
        raise Failure(f"{e}; last: {last}, written: {[f.sent for f in feeders]}")
    # The ModelStreamInfer non-readers: the server stops reading a stream
    # while 64 answers (kMaxUnwrittenAnswers) wait for its client, so it holds
    # only those (plus what gRPC's flow-control windows hold), and HTTP/2
    # holds the client's further writes back.
    stream_answered = int(last["answered"])
    # (grpcio takes all of a request iterator into its own buffers, so the
    # feeders' counts say nothing about what reached the server.)
    check(stream_answered < N_NONREADERS * N_STREAM_REQUESTS / 2,
          f"the server stopped reading the {N_NONREADERS} ModelStreamInfer non-readers: "
          f"{stream_answered} of their {N_NONREADERS * N_STREAM_REQUESTS} requests read and "
          f"answered, and no more while they do not read")
    check(all(f.sent == len(f.items) for f in feeders[N_NONREADERS:]),
          f"the ClassifyStream non-readers wrote all their frames "
          f"({[f.sent for f in feeders[N_NONREADERS:]]})")
    # Still not reading: more good traffic, and a ModelStreamInfer stream that reads.
    n, w = good_round(ctx, ctx.api, 10, "beside the stalled non-readers")
    n_good += n
    worst = max(worst, w)
    q = queue.Queue()
    reader = ctx.api.kserve.ModelStreamInfer(iter(q.get, None), timeout=RPC_TIMEOUT)
    for i in range(20):
        q.put(kserve_request(pb, MICRO, ctx.clips[i % 8:i % 8 + 1], rid=f"r{i}"))
    got_ids = set()
    for _ in range(20):
        a = next(reader)
        if a.error_message:
            raise Failure(f"a reading ModelStreamInfer client got {a.error_message!r}")
        k = int(a.infer_response.id[1:]) % 8
        check_kserve_answer("reading stream", a.infer_response, ctx.ref[k:k + 1])
        got_ids.add(a.infer_response.id)
    q.put(None)
    check(len(got_ids) == 20 and reader.code() == STATUS.OK,
          "a ModelStreamInfer client that reads gets its 20 answers, right, and ends OK")
    n_good += 20
    check(worst < RPC_TIMEOUT,
          f"beside the non-readers, {n_good} well-formed calls got the reference logits "
          f"(slowest round {worst:.2f} s)")

    # The pushed streams: every window accounted for; the unread ones beyond
    # the cap dropped.
    outcomes = {o: s.sum("clipserve_stream_windows_total", model=FLOOD, outcome=o)
                - s0.sum("clipserve_stream_windows_total", model=FLOOD, outcome=o)
                for o in ("classified", "superseded", "backlog", "queue_full", "failed",
                          "answer_dropped")}
    outcomes = {k: int(v) for k, v in outcomes.items() if v}
    check(set(outcomes) <= {"classified", "answer_dropped"} and outcomes.get("answer_dropped", 0) > 0
          and sum(outcomes.values()) == windows,
          f"the {N_PUSHERS} pushed streams: {windows} windows, each classified or dropped "
          f"unread beyond the cap of {MAX_PENDING_ANSWERS} answers (got {outcomes})")
    check(s.sum("clipserve_streams_active", model=FLOOD) == N_PUSHERS,
          f"the {N_PUSHERS} pushed streams are still open")

    # Memory: bounded whatever the non-readers send.
    rss_peak = max(ctx.sampler.peak(), server.rss())
    bound = CASE2_BASE + ctx.sanitizer_allowance
    check(rss_peak - rss0 <= bound,
          f"server RSS {rss0 / MIB:.0f} MiB -> peak {rss_peak / MIB:.0f} MiB: growth "
          f"{(rss_peak - rss0) / MIB:.0f} MiB <= bound {bound / MIB:.0f} MiB "
          f"(96 MiB{' + the sanitizer allowance' if ctx.sanitizer_allowance else ''})")
    ctx.numbers["case2 RSS before / peak"] = f"{rss0 / MIB:.0f} / {rss_peak / MIB:.0f} MiB"
    ctx.numbers["case2 windows of the pushed streams"] = str(outcomes)

    # Cancel them: the streams end, nothing is counted again.
    for c in calls:
        c.cancel()
    for f in feeders:
        f.release.set()
    for c in calls:
        check_code = c.code()  # blocks until done; cancel() made it so
        if check_code != STATUS.CANCELLED:
            raise Failure(f"a cancelled non-reader ended {check_code}")
    for ch in chans:
        ch.close()
    server.wait_gauge("the cancelled pushed streams to end", "clipserve_streams_active", 0)
    s = server.wait_gauge("the cancelled pushed streams to be counted",
                          "clipserve_streams_ended_total",
                          s0.sum("clipserve_streams_ended_total") + N_PUSHERS)
    ended = ended_by_code(s0, s)
    # Each cancelled stream ends once, as CANCELLED, even when gRPC fails the
    # stream's pending read (which looks like the client's half-close)
    # before it tells the server of the cancellation: StreamCall counts the
    # end in OnDone, after OnCancel.
    check(ended == {"CANCELLED": N_PUSHERS},
          f"the {N_PUSHERS} cancelled ClassifyStream clients end, each counted once "
          f"as CANCELLED (streams_ended_total grew by {ended})")
    ctx.numbers["case2 cancelled pushed streams counted as"] = str(ended)
    inflight_zero(ctx, "after case 2")
    got = delta(start, server.requests())
    want = {(FLOOD, "OK"): stream_answered, (MICRO, "OK"): n_good}
    expect_delta("case 2, by model and code", got, want)
    ctx.numbers["case2 RSS after cancelling"] = f"{server.rss() / MIB:.0f} MiB"


# ---- case 3: thousands of idle connections ----------------------------------

def case_idle(ctx):
    pb, server = ctx.pb, ctx.server
    log(f"== case 3: {N_IDLE} idle connections")
    start = server.requests()
    fds0 = server.fds()
    rss0 = server.rss()
    ctx.sampler.reset(rss0)
    limit = max_open_files(server.pid)
    check(limit >= fds0 + N_IDLE + 64,
          f"the server may open {limit} files, enough for {N_IDLE} more connections")
    socks = []
    t0 = time.monotonic()
    try:
        for i in range(N_IDLE):
            try:
                socks.append(raw_connect(server.port, PREFACE + SETTINGS))
            except OSError as e:
                raise Failure(f"idle connection {i}: {e}")
        log(f"{N_IDLE} connections opened and greeted in {time.monotonic() - t0:.1f} s")
        # Each one gets the server's SETTINGS.
        sel = selectors.DefaultSelector()
        got = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            got[s] = b""
        pending = set(socks)
        deadline = time.monotonic() + WAIT
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                if not data:
                    raise Failure("the server closed an idle connection")
                got[s] += data
                if len(got[s]) >= 9:
                    sel.unregister(s)
                    pending.discard(s)
        sel.close()
        check(not pending and all(got[s][3] == H2_SETTINGS for s in socks),
              f"each of the {N_IDLE} idle connections got the server's SETTINGS frame "
              f"({len(pending)} did not)")
        fds_peak = server.fds()
        # fds0 may still count a descriptor or two of the connections of the
        # cases before, which close meanwhile: FD_SLACK of them.
        check(fds_peak >= fds0 + N_IDLE - FD_SLACK,
              f"the server holds a descriptor for each: {fds0} -> {fds_peak}")
        # A new client is served while they sit there.
        ch = new_channel(server)
        n_beside, worst = good_round(ctx, Api(pb, ch), 10, f"beside {N_IDLE} idle connections")
        ch.close()
        check(True, f"beside {N_IDLE} idle connections a new client's {n_beside} calls get the "
                    f"reference logits (slowest {worst:.2f} s)")
        still = sum(1 for s in socks if s.fileno() >= 0)
        rss_peak = max(ctx.sampler.peak(), server.rss())
        bound = N_IDLE * CASE3_PER_CONN + ctx.sanitizer_allowance
        check(rss_peak - rss0 <= bound,
              f"server RSS {rss0 / MIB:.0f} MiB -> peak {rss_peak / MIB:.0f} MiB with "
              f"{still} idle connections: growth {(rss_peak - rss0) / MIB:.0f} MiB <= bound "
              f"{bound / MIB:.0f} MiB ({N_IDLE} x {CASE3_PER_CONN // 1024} KiB"
              f"{' + the sanitizer allowance' if ctx.sanitizer_allowance else ''})")
        ctx.numbers["case3 fds before / with idle connections"] = f"{fds0} / {fds_peak}"
        ctx.numbers["case3 RSS before / peak"] = f"{rss0 / MIB:.0f} / {rss_peak / MIB:.0f} MiB"
    finally:
        for s in socks:
            s.close()
    fds = live_util.wait_for(f"the server's descriptors back within {FD_SLACK} of {fds0}",
                             lambda: (lambda n: n if n <= fds0 + FD_SLACK else None)(server.fds()),
                             WAIT)
    check(True, f"{N_IDLE} idle connections closed: the server's descriptors {fds_peak} -> "
                f"{fds} (were {fds0})")
    ctx.numbers["case3 fds after closing"] = str(fds)
    n, _ = good_round(ctx, ctx.api, 4, "after the idle connections")
    inflight_zero(ctx, "after case 3")
    expect_delta("case 3, by model and code", delta(start, server.requests()),
                 {(MICRO, "OK"): n_beside + n})


# ---- case 4: oversized and malformed messages -------------------------------

def malformed_requests(ctx):
    """[(method, bytes, substrings of the INVALID_ARGUMENT message)]."""
    pb = ctx.pb
    clip = ctx.clips[0]
    out = []

    def classify(dtype, shape, data):
        return pb.vc.ClassifyRequest(model_name=MICRO, clip=pb.vc.Tensor(
            dtype=dtype, shape=shape, data=data)).SerializeToString()

    raw = clip.tobytes()
    out.append(("classify", classify(pb.vc.UINT8, [4, 16, 16, 3], raw[:-1]),
                ["clip.data has 3071 bytes; shape [4, 16, 16, 3] of UINT8 needs 3072"]))
    out.append(("classify", classify(pb.vc.FP32, [3, 4, 16, 16], raw),
                ["clip.data has 3072 bytes; shape [3, 4, 16, 16] of FP32 needs 12288"]))
    out.append(("classify", classify(pb.vc.DATA_TYPE_UNSPECIFIED, [4, 16, 16, 3], raw),
                ["clip.dtype must be UINT8 or FP32, got DATA_TYPE_UNSPECIFIED"]))
    out.append(("classify", classify(pb.vc.UINT8, [4, 16, 48], raw),
                ["clip.shape must be [T, H, W, 3] for UINT8, got [4, 16, 48]"]))
    out.append(("classify", classify(pb.vc.UINT8, [5, 16, 16, 3], raw + raw[:768]),
                ["clip is 5 x 16 x 16 (T x H x W); model 'micro' takes 4 x 16 x 16"]))
    out.append(("classify", classify(pb.vc.UINT8, [4, 16, 16, 0], b""),
                ["clip is empty or negative: shape [4, 16, 16, 0]"]))
    out.append(("classify", classify(pb.vc.UINT8, [4, 16, 16, 1], raw[:1024]),
                ["clip has 1 channels; model 'micro' takes 3"]))

    def infer(datatype, shape, data):
        r = pb.inf.ModelInferRequest(model_name=MICRO)
        r.inputs.add(name="clip", datatype=datatype, shape=shape)
        r.raw_input_contents.append(data)
        return r.SerializeToString()

    out.append(("infer", infer("UINT8", [1, 4, 16, 16, 3], raw + b"\0"),
                ["input 'clip': raw_input_contents[0] has 3073 bytes; shape [1, 4, 16, 16, 3] "
                 "of UINT8 needs 3072"]))
    out.append(("infer", infer("INT32", [1, 4, 16, 16, 3], raw * 4),
                ["input 'clip': datatype INT32 is not accepted"]))
    out.append(("infer", infer("UINT8", [4, 16, 16, 3], raw),
                ["input 'clip': shape must be [B, T, H, W, C] for UINT8, got [4, 16, 16, 3]"]))
    out.append(("infer", infer("UINT8", [9, 4, 16, 16, 3], raw * 9),
                ["input 'clip': a batch of 9 clips exceeds model 'micro''s max_batch_size, 8"]))
    out.append(("infer", infer("UINT8", [1, 4, -16, 16, 3], raw),
                ["input 'clip': shape [1, 4, -16, 16, 3] has a dimension that is not in 1.."]))
    out.append(("infer", infer("FP32", [1, 3, 4, 16, 8], raw),
                ["input 'clip' is 4 x 16 x 8 (T x H x W); model 'micro' takes 4 x 16 x 16"]))
    return out


# Bytes that are no protobuf message: a length-delimited field longer than
# what follows, wire types 6 and 7, a varint of 11 bytes, field number 0.
GARBAGE = [b"\x1a\x7fabc", b"\x0e\x01", b"\x0f", b"\x08" + b"\xff" * 10 + b"\x01", b"\x00\x01"]


def case_flood(ctx):
    pb, server = ctx.pb, ctx.server
    log("== case 4: oversized and malformed messages")
    start = server.requests()
    rss0 = server.rss()
    ctx.sampler.reset(rss0)
    api = Api(pb, new_channel(server))
    big = np.zeros(MAX_REQUEST_BYTES + 1, dtype=np.uint8).tobytes()
    oversized = {
        "classify": pb.vc.ClassifyRequest(model_name=MICRO, clip=pb.vc.Tensor(
            dtype=pb.vc.UINT8, shape=[4, 16, 16, 3], data=big)).SerializeToString(),
        "infer": kserve_request(pb, MICRO, ctx.clips[:1]).SerializeToString()}
    r = pb.inf.ModelInferRequest.FromString(oversized["infer"])
    r.raw_input_contents[0] = big
    oversized["infer"] = r.SerializeToString()
    malformed = malformed_requests(ctx)
    good = [("infer", k, kserve_request(pb, MICRO, ctx.clips[k:k + 1]).SerializeToString())
            for k in range(8)] + \
           [("classify", k, classify_request(pb, MICRO, ctx.clips[k]).SerializeToString())
            for k in range(8)]

    # The plan: every kind spread over the whole flood.
    plan = ([("oversized", i) for i in range(N_OVERSIZED)]
            + [("malformed", i) for i in range(N_MALFORMED)]
            + [("garbage", i) for i in range(N_GARBAGE)]
            + [("good", i) for i in range(N_GOOD)])
    random_order = np.random.default_rng(3).permutation(len(plan))
    plan = [plan[i] for i in random_order]
    method = {"infer": api.raw_infer, "classify": api.raw_classify}
    counts = {"oversized": 0, "malformed": 0, "garbage": 0, "good": 0}
    garbage_status = {}
    t0 = time.monotonic()
    for w in range(0, len(plan), WAVE):
        futs = []
        for kind, i in plan[w:w + WAVE]:
            if kind == "oversized":
                m = "infer" if i % 2 else "classify"
                futs.append((kind, m, None, method[m].future(oversized[m], timeout=RPC_TIMEOUT)))
            elif kind == "malformed":
                m, body, needles = malformed[i % len(malformed)]
                futs.append((kind, m, needles, method[m].future(body, timeout=RPC_TIMEOUT)))
            elif kind == "garbage":
                m = "infer" if i % 2 else "classify"
                body = GARBAGE[(i // 2) % len(GARBAGE)]
                futs.append((kind, m, body, method[m].future(body, timeout=RPC_TIMEOUT)))
            else:
                m, k, body = good[i % len(good)]
                futs.append((kind, m, k, method[m].future(body, timeout=RPC_TIMEOUT)))
        for kind, m, extra, f in futs:
            counts[kind] += 1
            if kind == "good":
                try:
                    b = f.result(timeout=RPC_TIMEOUT + 5)
                except grpc.RpcError as e:
                    raise Failure(f"a well-formed {m} in the flood failed: "
                                  f"{e.code().name}: {e.details()}")
                if m == "infer":
                    check_kserve_answer("good ModelInfer in the flood",
                                        pb.inf.ModelInferResponse.FromString(b),
                                        ctx.ref[extra:extra + 1])
                else:
                    check_classify_answer("good Classify in the flood",
                                          pb.vc.ClassifyResponse.FromString(b), ctx.ref[extra])
                continue
            code, details = rpc_error(f)
            if kind == "oversized":
                if code != STATUS.RESOURCE_EXHAUSTED or "larger than max" not in details:
                    raise Failure(f"oversized {m} ({len(oversized[m])} bytes): {code.name}: "
                                  f"{details!r}, want RESOURCE_EXHAUSTED 'larger than max'")
            elif kind == "malformed":
                if code != STATUS.INVALID_ARGUMENT or not all(n in details for n in extra):
                    raise Failure(f"malformed {m}: {code.name}: {details!r}, want "
                                  f"INVALID_ARGUMENT naming {extra}")
            else:
                garbage_status.setdefault((code.name, details), set()).add((m, extra))
    took = time.monotonic() - t0
    check(True, f"{counts['oversized']} oversized requests: RESOURCE_EXHAUSTED "
                f"'larger than max'; {counts['malformed']} malformed: INVALID_ARGUMENT with the "
                f"server's message; {counts['good']} good ones interleaved: the reference "
                f"logits ({took:.1f} s)")
    # gRPC's callback API (grpcpp/impl/codegen/server_callback_handlers.h)
    # answers a request it cannot deserialise with UNIMPLEMENTED and no
    # message, before any handler of clipserve sees it.
    check(set(garbage_status) == {("UNIMPLEMENTED", "")},
          f"{counts['garbage']} requests that are no protobuf message: UNIMPLEMENTED with "
          f"no message, from gRPC (got {sorted(garbage_status)})")
    ctx.numbers["case4 garbage answered"] = "; ".join(
        f"{c}: {d!r}" for c, d in sorted(garbage_status))

    # A stream killed by an oversized message while its good request waits
    # in "held"'s queue.
    q = queue.Queue()
    stream = api.kserve.ModelStreamInfer(iter(q.get, None), timeout=RPC_TIMEOUT)
    q.put(kserve_request(pb, HELD, ctx.clips[:1], rid="queued"))
    before_stream = server.requests()
    server.wait_gauge("the stream's request queued in held", "clipserve_inflight_requests", 1,
                      model=HELD)
    q.put(pb.inf.ModelInferRequest.FromString(oversized["infer"]))
    try:
        for a in stream:
            raise Failure(f"the killed stream answered {a}")
        raise Failure("a stream with an oversized message ended OK")
    except grpc.RpcError as e:
        check(e.code() == STATUS.RESOURCE_EXHAUSTED and "larger than max" in (e.details() or ""),
              f"a ModelStreamInfer stream that sends an oversized message ends "
              f"RESOURCE_EXHAUSTED ({e.details()!r})")
    finally:
        q.put(None)
    held_batch(ctx, api)
    s = inflight_zero(ctx, "after the killed stream")
    got = delta(before_stream, s.requests())
    check(got in ({(HELD, "CANCELLED"): 1, (HELD, "OK"): 1}, {(HELD, "OK"): 2}),
          f"the killed stream's queued request is answered once (CANCELLED, or OK) besides "
          f"the batch of {HELD_BATCH} (got {got})")

    # Bytes that are no message on the streaming RPCs.
    s0 = server.scrape()
    before_garbage = s0.requests()
    q = queue.Queue()
    raw_stream = api.channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
    call = raw_stream(iter(q.get, None), timeout=RPC_TIMEOUT)
    q.put(kserve_request(pb, MICRO, ctx.clips[:1], rid="before-garbage").SerializeToString())
    first = pb.inf.ModelStreamInferResponse.FromString(next(call))
    check_kserve_answer("ModelStreamInfer before garbage", first.infer_response, ctx.ref[:1])
    q.put(GARBAGE[0])
    try:
        rest = list(call)
        code, details = call.code(), call.details() or ""
    except grpc.RpcError as e:
        rest, code, details = [], e.code(), e.details() or ""
    finally:
        q.put(None)
    check(rest == [] and code in (STATUS.OK, STATUS.INVALID_ARGUMENT, STATUS.INTERNAL),
          f"a ModelStreamInfer stream that sends bytes that are no message after a good "
          f"request: the good one answered right, then the stream ends {code.name} "
          f"{details!r} with no answer for the garbage")
    ctx.numbers["case4 ModelStreamInfer after garbage bytes ends"] = f"{code.name} {details!r}"
    raw_stream = api.channel.stream_stream("/clipserve.v1.VideoClassifier/ClassifyStream")
    try:
        rest = list(raw_stream(iter([GARBAGE[0]]), timeout=RPC_TIMEOUT))
        raise Failure(f"a ClassifyStream of garbage bytes ended OK ({len(rest)} answers)")
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
    check(code == STATUS.INVALID_ARGUMENT,
          f"a ClassifyStream whose first message is bytes that are no message ends "
          f"INVALID_ARGUMENT ({details!r})")
    ctx.numbers["case4 ClassifyStream of garbage bytes ends"] = f"{code.name} {details!r}"
    s = server.wait_gauge("the garbage ClassifyStream counted", "clipserve_streams_ended_total",
                          s0.sum("clipserve_streams_ended_total") + 1)
    check(ended_by_code(s0, s) == {"INVALID_ARGUMENT": 1}
          and delta(before_garbage, s.requests()) == {(MICRO, "OK"): 1},
          "garbage on the streams: only the good request counted (OK), the ClassifyStream "
          "ended once (INVALID_ARGUMENT)")
    for k, v in delta(before_garbage, s.requests()).items():
        got[k] = got.get(k, 0) + v

    rss_peak = max(ctx.sampler.peak(), server.rss())
    bound = CASE4_BASE + 2 * WAVE * MAX_REQUEST_BYTES + ctx.sanitizer_allowance
    check(rss_peak - rss0 <= bound,
          f"server RSS {rss0 / MIB:.0f} MiB -> peak {rss_peak / MIB:.0f} MiB through the flood: "
          f"growth {(rss_peak - rss0) / MIB:.0f} MiB <= bound {bound / MIB:.0f} MiB (96 MiB + "
          f"2 x {WAVE} requests in flight x {MAX_REQUEST_BYTES // MIB} MiB"
          f"{' + the sanitizer allowance' if ctx.sanitizer_allowance else ''})")
    ctx.numbers["case4 RSS before / peak"] = f"{rss0 / MIB:.0f} / {rss_peak / MIB:.0f} MiB"
    n, _ = good_round(ctx, ctx.api, 4, "after the flood")
    inflight_zero(ctx, "after case 4")
    want = {(MICRO, "OK"): N_GOOD + n, (MICRO, "INVALID_ARGUMENT"): N_MALFORMED}
    for k, v in got.items():
        want[k] = want.get(k, 0) + v
    expect_delta("case 4, by model and code (oversized and garbage requests never reach a "
                 "handler)", delta(start, server.requests()), want)
    api.channel.close()


# ---- main -------------------------------------------------------------------

def write_repo(bench_repo, repo):
    run_tool([bench_repo, repo], "clipserve-bench-repo")
    shutil.rmtree(os.path.join(repo, "tiny-b1"))  # not needed: one model less to load
    for name, batch, delay, queue_size in ((HELD, HELD_BATCH, HELD_DELAY_US, 1024),
                                           (FLOOD, 8, 2000, 8192)):
        d = os.path.join(repo, name)
        os.makedirs(os.path.join(d, "1"))
        shutil.copyfile(os.path.join(repo, MICRO, "1", "model.pt"),
                        os.path.join(d, "1", "model.pt"))
        with open(os.path.join(d, "config.pbtxt"), "w") as f:
            f.write(f'name: "{name}"\n'
                    f'backend: "torchscript"\n'
                    f"max_batch_size: {batch}\n"
                    f'input {{ name: "clip" data_type: TYPE_FP32 dims: [3, 4, 16, 16] }}\n'
                    f'output {{ name: "logits" data_type: TYPE_FP32 dims: [400] }}\n'
                    f"dynamic_batching {{ max_queue_delay_microseconds: {delay} "
                    f"max_queue_size: {queue_size} }}\n"
                    f"instance_group {{ count: 1 kind: KIND_CPU }}\n")


def raise_nofile():
    want = N_IDLE + 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise Failure(f"RLIMIT_NOFILE hard limit {hard} < {want}: {N_IDLE} idle connections "
                          f"need it raised (ulimit -Hn {want})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def sanitizer_allowance(pid):
    """ASan keeps freed memory in a quarantine (resident): allow for it on a
    sanitizer build, recognised by its shadow mapping (VmSize over 1 TiB)."""
    if proc_status(pid, "VmSize") < (1 << 40):
        return 0
    m = re.search(r"quarantine_size_mb=(\d+)", os.environ.get("ASAN_OPTIONS", ""))
    return (int(m.group(1)) if m else ASAN_QUARANTINE_DEFAULT_MB) * MIB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the clipserve binary")
    ap.add_argument("--bench-repo", required=True, help="the clipserve-bench-repo binary")
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."),
                    help="the project's source directory (default: this file's ../..)")
    args = ap.parse_args()
    install_signal_handlers()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clipserve-fault-test-")
    children = Children()
    ctx = Ctx()
    ctx.numbers = {}
    ok = False
    log_path = os.path.join(tmp, "clipserve.log")
    try:
        nofile = raise_nofile()
        log(f"RLIMIT_NOFILE {nofile} (the server inherits it)")
        ctx.pb = pb = compile_protos(args.source_dir, tmp)
        repo = os.path.join(tmp, "models")
        write_repo(args.bench_repo, repo)
        micro, heavy = Model(repo, MICRO), Model(repo, HEAVY)
        proc, port, mport = live_util.start_clipserve(
            children, args.server, repo, log_path, timeout=START_TIMEOUT * 2,
            extra=["--max-request-bytes", str(MAX_REQUEST_BYTES),
                   "--grpc-max-connection-age", "0",
                   "--stream-idle-timeout-seconds", "600"])
        ctx.server = server = Server(proc, port, mport, log_path)
        ctx.sanitizer_allowance = sanitizer_allowance(server.pid)
        log(f"sanitizer allowance for RSS bounds: {ctx.sanitizer_allowance // MIB} MiB")
        ctx.sampler = RssSampler(server.pid)
        ctx.sampler.start()
        ctx.api = Api(pb, new_channel(server))

        rng = np.random.default_rng(20240607)
        ctx.clips = rng.integers(0, 256, size=micro.u8_shape(8), dtype=np.uint8)
        ctx.heavy_clip = rng.integers(0, 256, size=heavy.u8_shape(1), dtype=np.uint8)
        r = ctx.api.kserve.ModelInfer(kserve_request(pb, MICRO, ctx.clips), timeout=RPC_TIMEOUT)
        ctx.ref = kserve_logits(r)
        for k in range(8):
            r = ctx.api.kserve.ModelInfer(kserve_request(pb, MICRO, ctx.clips[k:k + 1]),
                                          timeout=RPC_TIMEOUT)
            check_kserve_answer(f"micro clip {k} alone", r, ctx.ref[k:k + 1])
        r = ctx.api.kserve.ModelInfer(kserve_request(pb, HEAVY, ctx.heavy_clip),
                                      timeout=RPC_TIMEOUT)
        ctx.heavy_ref = kserve_logits(r)
        check(ctx.ref.shape == (8, 400) and ctx.heavy_ref.shape == (1, 400),
              "reference logits: micro's 8 clips (alone = in a batch), a tiny-b8 clip")
        fds0, rss0 = server.fds(), server.rss()
        ctx.numbers["idle server fds / RSS"] = f"{fds0} / {rss0 / MIB:.0f} MiB"

        timings = {}
        for name, case in (("case 1", case_disconnects), ("case 2", case_nonreaders),
                           ("case 3", case_idle), ("case 4", case_flood)):
            t = time.monotonic()
            case(ctx)
            timings[name] = time.monotonic() - t
            log(f"{name} passed in {timings[name]:.1f} s")

        ctx.api.channel.close()
        ctx.sampler.stop.set()
        rc = children.stop(proc, timeout=STOP_TIMEOUT * 2)
        report = sanitizer_report(log_path)
        check(report is None, "no sanitizer report in the server's log"
              + (f":\n{report}" if report else ""))
        check(rc == 0, f"clipserve drains and exits 0 on SIGTERM (got {rc})")
        ok = True
        log("summary:")
        for k, v in ctx.numbers.items():
            log(f"  {k}: {v}")
        for k, v in timings.items():
            log(f"  {k}: {v:.1f} s")
        log(f"PASS: {live_util.CHECKS[0]} checks in {time.monotonic() - started:.1f} s")
        return 0
    except Failure as e:
        log(f"FAIL: {e}")
        return 1
    except grpc.RpcError as e:
        log(f"FAIL: unexpected RPC error {e.code().name}: {e.details()}")
        return 1
    finally:
        if not ok:
            try:
                report = sanitizer_report(log_path)
            except OSError:
                report = None
            if report:
                log(f"sanitizer report in the server's log:\n{report}")
            for k, v in ctx.numbers.items():
                log(f"  {k}: {v}")
        if hasattr(ctx, "sampler"):
            ctx.sampler.stop.set()
        live_util.finish(children, tmp, failed=not ok, keep=False)


if __name__ == "__main__":
    sys.exit(main())
