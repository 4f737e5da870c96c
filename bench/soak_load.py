#!/usr/bin/python3
"""The Python half of bench/soak.sh: the load clipserve-perf cannot make, and
the soak's accounting and verdict.

  soak_load.py load --server HOST:PORT --seconds S --media DIR --json FILE
                    [--scale X] [--seed N] [--drain-seconds S]
  soak_load.py report DIR --seconds S [--warmup-fraction F] [--rss-limit-pct P]
                    [--fd-slack N] [--thread-slack N]

load: open-loop (Poisson, seeded) Classify calls of several kinds at once,
each kind a "source" with the model it targets, the status codes it may end
with and the code the server may have recorded as OK instead (a cancel or a
deadline that came after the server answered); plus one ClassifyStream at a
time. Rates, per second, times --scale:

  clips      anysize (free dims)  uint8 clips, three shapes in turn      3
  video      tiny-video           four encoded videos in turn            1.5
  deadline   tiny-deadline        8x48x48, deadline 100/150/300/600 ms   3
                                  (the model's batching window is 200 ms:
                                  the shorter ones expire in the queue)
  cancel     tiny-cancel          8x48x48, cancelled 50-250 ms after     3
                                  the call starts (200 ms window: most
                                  are still queued then). Neither is
                                  shorter: a call whose deadline passes,
                                  or which is cancelled, before gRPC hands
                                  it to clipserve is never counted there
                                  (the report allows 1% of such calls),
                                  and on a busy 2-core machine that took
                                  over 20 ms for a few calls in a hundred;
                                  the clips are small (55 KB, one HTTP/2
                                  window) for the same reason
  bad-*      several              malformed requests, kinds in turn      2
  oversized  micro                9 MiB (over --max-request-bytes):      0.1
                                  gRPC refuses it before clipserve sees
                                  it, so the server never counts it
  streams    tiny-b8              one at a time, a new one every 6 s:
                                  pushed H.264 then half-close (OK), the
                                  same cancelled after 1.5 s (CANCELLED),
                                  an unknown model (NOT_FOUND), data before
                                  the open (INVALID_ARGUMENT)

Arrivals while 64 calls of a source are in flight are dropped (counted, not
sent). After --seconds no call starts; calls still open --drain-seconds
later are cancelled and count as UNFINISHED (a failure), as do OK answers
without a class, and whole streams answered OK without a window (OK_EMPTY).
Writes --json:
{"sources": [...], "streams": [...]}, each with its codes by name.

report: reads what soak.sh left in DIR (load.json, perf-*.json,
perf-streams-*.json, metrics-start.prom, metrics-end.prom, samples.csv, and
failures.txt: what soak.sh itself found), prints the accounting, the
resource table and the verdict; exit 1 when the soak failed (why is
printed), 0 when it passed.

Needs grpcio and grpc_tools (Debian: python3-grpcio, python3-grpc-tools): the
stubs are generated at start from proto/clipserve/v1/video_classifier.proto,
as client/python/classify_stream.py does.
"""
import os

# Debian's grpc_tools bundles an old protoc whose generated code the upb
# backend of newer protobuf rejects; the pure-Python backend accepts it, and
# every request here is serialised once.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import csv  # noqa: E402
import glob  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PROTO = os.path.join("clipserve", "v1", "video_classifier.proto")
MAX_OUTSTANDING = 64
CLASSIFY = "/clipserve.v1.VideoClassifier/Classify"
CLASSIFY_STREAM = "/clipserve.v1.VideoClassifier/ClassifyStream"
UNFINISHED = "UNFINISHED"  # still open at the end of the drain: cancelled by us
EMPTY = "OK_EMPTY"         # OK, but no class (a Classify) or no window (a whole stream)


def server_code(code):
    """The code the server counts for a call that ended `code` here."""
    return {UNFINISHED: "CANCELLED", EMPTY: "OK"}.get(code, code)


# ---- load ---------------------------------------------------------------------

def load_stubs():
    with tempfile.TemporaryDirectory(prefix="clipserve-soak-stubs-") as tmp:
        proto_root = os.path.join(ROOT, "proto")
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
               f"--python_out={tmp}", os.path.join(proto_root, PROTO)]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            sys.exit(f"soak_load: {' '.join(cmd)} failed: {r.stdout.decode(errors='replace')}")
        sys.path.insert(0, tmp)
        try:
            return importlib.import_module("clipserve.v1.video_classifier_pb2")
        finally:
            sys.path.pop(0)


class Source:
    """One kind of request: what it sends, where the server counts it, and
    which codes it may end with."""

    def __init__(self, name, model, rate, allowed, race=None, counted=True):
        self.name = name
        self.model = model      # the server's `model` label ("unknown": not found)
        self.rate = rate        # per second, before --scale
        self.allowed = allowed  # codes this source may end with
        self.race = race        # a client code the server may have counted as OK
        self.counted = counted  # False: refused by gRPC, never in requests_total
        self.codes = collections.Counter()
        self.sent = 0
        self.dropped = 0

    def record(self):
        return {"source": self.name, "model": self.model, "rate": self.rate,
                "counted": self.counted, "allowed": sorted(self.allowed), "race": self.race,
                "sent": self.sent, "dropped": self.dropped, "codes": dict(self.codes)}


def clip(pb2, dtype, shape, data, model, **kw):
    r = pb2.ClassifyRequest(model_name=model, top_k=1, **kw)
    r.clip.dtype = dtype
    r.clip.shape.extend(shape)
    r.clip.data = data
    return r.SerializeToString()


def video(pb2, data, model, num_frames=0):
    r = pb2.ClassifyRequest(model_name=model, top_k=1)
    r.video.data = data
    r.video.sampling.num_frames = num_frames
    return r.SerializeToString()


class Load:
    def __init__(self, args, pb2):
        import grpc  # noqa: F401  (imported late: the report needs no grpc)
        self.args = args
        self.pb2 = pb2
        self.rng = random.Random(args.seed)
        self.live = set()         # calls in flight
        self.unfinished = set()   # calls we cancelled at the end of the drain
        u8, f32 = pb2.UINT8, pb2.FP32
        rb = self.rng.randbytes
        media = args.media
        videos = [open(os.path.join(media, f), "rb").read()
                  for f in ("h264.mp4", "vp9.webm", "mpeg4.avi", "hevc.mkv")]
        small_clip = rb(8 * 48 * 48 * 3)  # 55 KB: within one HTTP/2 flow-control window

        self.sources = []

        def add(source, bodies, **call):
            self.sources.append((source, bodies, call))

        add(Source("clips", "anysize", 3, {"OK"}),
            [clip(pb2, u8, s, rb(s[0] * s[1] * s[2] * 3), "anysize")
             for s in ((8, 32, 32, 3), (4, 48, 64, 3), (16, 40, 40, 3))])
        add(Source("video", "tiny-video", 1.5, {"OK"}),
            [video(pb2, v, "tiny-video") for v in videos])
        add(Source("deadline", "tiny-deadline", 3, {"OK", "DEADLINE_EXCEEDED"},
                   race="DEADLINE_EXCEEDED"),
            [clip(pb2, u8, (8, 48, 48, 3), small_clip, "tiny-deadline")],
            timeouts=(0.1, 0.15, 0.3, 0.6))
        add(Source("cancel", "tiny-cancel", 3, {"OK", "CANCELLED"}, race="CANCELLED"),
            [clip(pb2, u8, (8, 48, 48, 3), small_clip, "tiny-cancel")],
            cancel=(0.05, 0.25))
        bad = [
            # name, model label, expected code, body
            ("bad-shape", "tiny-b8", "INVALID_ARGUMENT",
             clip(pb2, u8, (16, 64, 64, 3), rb(16 * 64 * 64 * 3), "tiny-b8")),
            ("bad-layout", "micro", "INVALID_ARGUMENT",  # uint8 in the fp32 layout
             clip(pb2, u8, (3, 4, 16, 16), rb(3 * 4 * 16 * 16), "micro")),
            ("bad-dtype", "micro", "INVALID_ARGUMENT",
             clip(pb2, pb2.DATA_TYPE_UNSPECIFIED, (4, 16, 16, 3), rb(4 * 16 * 16 * 3), "micro")),
            ("bad-bytes", "micro", "INVALID_ARGUMENT",
             clip(pb2, f32, (3, 4, 16, 16), rb(100), "micro")),
            ("bad-empty", "anysize", "INVALID_ARGUMENT",
             clip(pb2, u8, (0, 32, 32, 3), b"", "anysize")),
            ("bad-huge", "anysize", "INVALID_ARGUMENT",  # declares ~3 TB, sends 12 bytes
             clip(pb2, u8, (1000, 1000, 1000, 3), rb(12), "anysize")),
            ("bad-noinput", "micro", "INVALID_ARGUMENT",
             pb2.ClassifyRequest(model_name="micro").SerializeToString()),
            ("bad-priority", "micro", "INVALID_ARGUMENT",
             clip(pb2, u8, (4, 16, 16, 3), rb(4 * 16 * 16 * 3), "micro", priority=7)),
            ("bad-model", "unknown", "NOT_FOUND",
             clip(pb2, u8, (4, 16, 16, 3), rb(4 * 16 * 16 * 3), "no-such-model")),
            ("bad-version", "unknown", "NOT_FOUND",
             clip(pb2, u8, (4, 16, 16, 3), rb(4 * 16 * 16 * 3), "micro", model_version="99")),
            ("bad-video", "tiny-video", "INVALID_ARGUMENT", video(pb2, rb(64 << 10), "tiny-video")),
            ("bad-video-frames", "tiny-video", "INVALID_ARGUMENT",
             video(pb2, videos[0], "tiny-video", num_frames=8)),
            ("bad-video-bytes", "tiny-video", "INVALID_ARGUMENT",  # over --video-max-bytes
             video(pb2, videos[0] + bytes((5 << 20) - len(videos[0])), "tiny-video")),
        ]
        for name, model, code, body in bad:
            add(Source(name, model, 2 / len(bad), {code}), [body])
        add(Source("oversized", "micro", 0.1, {"RESOURCE_EXHAUSTED"}, counted=False),
            [video(pb2, bytes(9 << 20), "micro")])

        # Streams, in turn: (kind, expected code).
        self.stream_kinds = [("stream-complete", "OK"), ("stream-cancel", "CANCELLED"),
                             ("stream-complete", "OK"), ("stream-unknown-model", "NOT_FOUND"),
                             ("stream-complete", "OK"), ("stream-data-first", "INVALID_ARGUMENT")]
        turn = len(self.stream_kinds) * 6.0  # seconds for one of each
        self.streams = {}
        for kind, code in self.stream_kinds:
            if kind not in self.streams:
                model = "no-such-model" if kind == "stream-unknown-model" else "tiny-b8"
                rate = sum(k == kind for k, _ in self.stream_kinds) / turn
                self.streams[kind] = Source(kind, model, rate, {code})
        h264 = open(os.path.join(media, "stream.h264"), "rb").read()
        self.stream_seconds = 4.0  # stream.h264's length (soak.sh makes it)
        chunk = 16 << 10
        self.stream_chunks = [pb2.StreamRequest(data=h264[i:i + chunk]).SerializeToString()
                              for i in range(0, len(h264), chunk)]

    def stream_open(self, model):
        o = self.pb2.StreamOpen(model_name=model, input=self.pb2.StreamOpen.H264, top_k=1)
        return self.pb2.StreamRequest(open=o).SerializeToString()

    async def call(self, method, source, body, timeout=None, cancel_after=None):
        import grpc
        source.sent += 1
        call = method(body, timeout=timeout)
        self.live.add(call)
        try:
            if cancel_after is not None:
                await asyncio.sleep(cancel_after)
                call.cancel()
            answer = None
            try:
                answer = await call
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            code = (await call.code()).name
            if code == "OK" and not self.pb2.ClassifyResponse.FromString(answer).classes:
                code = EMPTY
        finally:
            self.live.discard(call)
        source.codes[UNFINISHED if call in self.unfinished else code] += 1

    async def arrivals(self, method, source, bodies, end, timeouts=None, cancel=None):
        """Poisson arrivals at source.rate * scale until `end`."""
        loop = asyncio.get_running_loop()
        rate = source.rate * self.args.scale
        rng = random.Random(f"{self.args.seed}/{source.name}")
        tasks = set()
        t, i = loop.time(), 0
        while True:
            t += rng.expovariate(rate)
            if t >= end:
                break
            await asyncio.sleep(max(0.0, t - loop.time()))
            if len(tasks) >= MAX_OUTSTANDING:
                source.dropped += 1
                continue
            timeout = rng.choice(timeouts) if timeouts else None
            after = rng.uniform(*cancel) if cancel else None
            task = asyncio.ensure_future(
                self.call(method, source, bodies[i % len(bodies)], timeout, after))
            i += 1
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    async def stream(self, method, kind):
        import grpc
        source = self.streams[kind]
        source.sent += 1
        chunks, pace = self.stream_chunks, self.stream_seconds / len(self.stream_chunks)

        async def requests():
            if kind == "stream-data-first":
                yield chunks[0]
                return
            yield self.stream_open("no-such-model" if kind == "stream-unknown-model" else "tiny-b8")
            if kind == "stream-unknown-model":
                return
            for c in chunks:
                await asyncio.sleep(pace)
                yield c

        call = method(requests())
        self.live.add(call)
        canceller = None
        if kind == "stream-cancel":
            async def cancel_later():
                await asyncio.sleep(1.5)
                call.cancel()
            canceller = asyncio.ensure_future(cancel_later())
        windows = 0
        try:
            try:
                async for answer in call:
                    windows += self.pb2.StreamResponse.FromString(answer).HasField("window")
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            code = (await call.code()).name
            if code == "OK" and kind == "stream-complete" and windows == 0:
                code = EMPTY
        finally:
            self.live.discard(call)
            if canceller is not None:
                canceller.cancel()
        source.codes[UNFINISHED if call in self.unfinished else code] += 1

    async def streams_in_turn(self, method, end):
        loop = asyncio.get_running_loop()
        period = 6.0 / self.args.scale
        i = 0
        next_start = loop.time()
        while next_start < end:
            await asyncio.sleep(max(0.0, next_start - loop.time()))
            await self.stream(method, self.stream_kinds[i % len(self.stream_kinds)][0])
            i += 1
            next_start += period

    async def run(self):
        import grpc
        # No retries and no message limit on our side: every call is sent
        # once, and the server alone decides what is too large.
        options = [("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.enable_retries", 0)]
        loop = asyncio.get_running_loop()
        end = loop.time() + self.args.seconds
        async with grpc.aio.insecure_channel(self.args.server, options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            unary = channel.unary_unary(CLASSIFY)  # bytes in, bytes out
            bidi = channel.stream_stream(CLASSIFY_STREAM)
            jobs = [self.arrivals(unary, s, bodies, end, **call)
                    for s, bodies, call in self.sources]
            jobs.append(self.streams_in_turn(bidi, end))
            work = asyncio.ensure_future(asyncio.gather(*jobs))
            # Wait for the load, then for its last calls (up to the drain).
            await asyncio.wait({work}, timeout=self.args.seconds + self.args.drain_seconds)
            if not work.done():
                for c in list(self.live):
                    self.unfinished.add(c)
                    c.cancel()
                await work
            work.result()

    def report(self):
        return {"tool": "soak_load", "seconds": self.args.seconds, "scale": self.args.scale,
                "seed": self.args.seed,
                "sources": [s.record() for s, _, _ in self.sources],
                "streams": [s.record() for s in self.streams.values()]}


def main_load(args):
    pb2 = load_stubs()
    load = Load(args, pb2)
    started = time.time()
    asyncio.run(load.run())
    out = load.report()
    out["wall_seconds"] = time.time() - started
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    bad = sum(s.codes[UNFINISHED] for s, _, _ in load.sources)
    bad += sum(s.codes[UNFINISHED] for s in load.streams.values())
    return 1 if bad else 0


# ---- report -------------------------------------------------------------------

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read_metrics(path):
    """{(name, frozenset(labels)): value} from Prometheus' text format."""
    out = {}
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def by(metrics, name, *keys):
    """Sum of `name`'s series, by the label values `keys`."""
    out = collections.Counter()
    for (n, labels), v in metrics.items():
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] += v
    return out


def delta(end, start, name, *keys):
    a, b = by(end, name, *keys), by(start, name, *keys)
    return collections.Counter({k: int(round(a[k] - b[k])) for k in set(a) | set(b)
                                if round(a[k] - b[k]) != 0})


def perf_sources(out_dir):
    """clipserve-perf's runs as sources: codes of every request it sent."""
    sources, streams = [], []
    for path in sorted(glob.glob(os.path.join(out_dir, "perf-*.json"))):
        run = json.load(open(path))
        name = os.path.basename(path)[:-5]
        if run.get("mode") == "streams":
            codes = collections.Counter()
            for r in run["runs"]:
                for st in r["per_stream"]:
                    codes[UNFINISHED if st.get("unfinished") else st["code"]] += 1
            streams.append({"source": name, "model": run["model"], "allowed": ["OK"],
                            "race": None, "counted": True, "sent": sum(codes.values()),
                            "dropped": 0, "codes": dict(codes)})
            continue
        step = run["steps"][0]
        codes = collections.Counter(step["errors"])
        codes["OK"] += step["ok"]
        codes[UNFINISHED] += step["unfinished"]
        codes = +codes
        rate = step.get("offered_rate")
        sources.append({"source": name, "model": run["model"], "rate": rate, "scaled": True,
                        "allowed": ["OK"],
                        "race": None, "counted": True, "sent": step["sent"],
                        "dropped": step["dropped"], "codes": dict(codes)})
        if sum(codes.values()) != step["sent"]:
            sources[-1]["inconsistent"] = True
    return sources, streams


def compare(title, sources, server, failures, key, noun="calls"):
    """Client codes (summed over sources by `key`) against the server's.

    Exact, but for the calls a client gave up on (a source's `race` code:
    CANCELLED, DEADLINE_EXCEEDED). Such a call may have been
      - answered OK by the server meanwhile: the server has one OK more and
        one of the race code less (reported, allowed);
      - given up before gRPC handed it to clipserve (the upload or the
        dispatch took longer than the deadline or the cancel): the server
        never counts it. Allowed for at most 1% (rounded up) of the race
        code's calls, reported; more fails the soak.
    """
    client = collections.defaultdict(collections.Counter)
    races = collections.defaultdict(set)
    for s in sources:
        if not s["counted"]:
            continue
        for code, n in s["codes"].items():
            # UNFINISHED (we cancelled it) is CANCELLED there, OK_EMPTY is OK.
            client[key(s)][server_code(code)] += n
        if s["race"]:
            races[key(s)].add(s["race"])
    print(f"\n== {title}")
    print(f"{'model':16s} {'code':20s} {'client':>8s} {'server':>8s}  note")
    for group in sorted(set(client) | set(server)):
        c, s = client[group], server.get(group, collections.Counter())
        raced, uncounted = {}, {}
        extra_ok = s["OK"] - c["OK"]
        shortfall = sum(c.values()) - sum(s.values())
        for code in sorted(races[group]):
            gap = c[code] - s[code]
            if gap > 0 and extra_ok > 0:
                raced[code] = min(gap, extra_ok)
                extra_ok -= raced[code]
                gap -= raced[code]
            if gap > 0 and shortfall > 0:
                uncounted[code] = min(gap, shortfall)
                shortfall -= uncounted[code]
        expected = collections.Counter(c)
        expected["OK"] += sum(raced.values())
        expected.subtract(raced)
        expected.subtract(uncounted)
        off = {}
        for code in sorted(set(c) | set(s)):
            notes = []
            if code == "OK" and sum(raced.values()):
                notes.append(f"{sum(raced.values())} answered OK after the client had given up")
            if raced.get(code):
                notes.append(f"{raced[code]} of them answered OK")
            if uncounted.get(code):
                limit = -(-c[code] // 100)
                notes.append(f"{uncounted[code]} given up before gRPC handed them to clipserve "
                             f"(not counted; at most {limit} allowed)")
                if uncounted[code] > limit:
                    off[code + " (not counted)"] = -uncounted[code]
            if s[code] != expected[code]:
                off[code] = s[code] - expected[code]
                notes.insert(0, f"MISMATCH ({off[code]:+d})")
            print(f"{group:16s} {code:20s} {c[code]:8d} {s[code]:8d}  {'; '.join(notes)}")
        if off:
            why = ""
            pair = sorted(off.items(), key=lambda kv: kv[1])
            if len(off) == 2 and pair[0][1] == -pair[1][1]:
                why = (f": {pair[1][1]} {noun} that ended {pair[0][0]} for the client were "
                       f"counted as {pair[1][0]} by the server")
            elif sum(off.values()) < 0:
                why = f": {-sum(off.values())} {noun} never counted by the server"
            elif sum(off.values()) > 0:
                why = f": the server counted {sum(off.values())} {noun} more than were sent"
            failures.append(f"{title.split(':')[0]}: {group}: server - client "
                            + ", ".join(f"{k} {v:+d}" for k, v in sorted(off.items())) + why)


def print_sources(title, sources, failures, scale, seconds):
    print(f"\n== {title}")
    print(f"{'source':26s} {'model':14s} {'sent':>7s} {'dropped':>7s}  codes")
    for s in sources:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(s["codes"].items()))
        unexpected = {k: v for k, v in s["codes"].items() if k not in s["allowed"]}
        note = ""
        if unexpected:
            note = "  UNEXPECTED: " + ", ".join(f"{k} {v}" for k, v in sorted(unexpected.items()))
            failures.append(f"{s['source']} ({s['model']}): unexpected codes {unexpected} "
                            f"(allowed: {', '.join(s['allowed'])})")
        if s.get("inconsistent"):
            note += "  (codes do not add up to sent)"
            failures.append(f"{s['source']}: its codes do not add up to what it sent")
        # A source due at least 5 times in the run must have sent something.
        due = (s.get("rate") or 0) * (1 if s.get("scaled") else scale) * seconds
        if s["sent"] == 0 and due >= 5:
            note += "  NOTHING SENT"
            failures.append(f"{s['source']}: sent nothing")
        print(f"{s['source']:26s} {str(s['model'] or '-'):14s} {s['sent']:7d} "
              f"{s['dropped']:7d}  {codes}{note}")


def resources(args, failures):
    rows = list(csv.DictReader(open(os.path.join(args.dir, "samples.csv"))))
    if not rows:
        failures.append("no resource samples")
        return
    print("\n== resources of the server process (samples.csv)")
    print(f"{'t s':>6s} {'RSS MiB':>9s} {'fds':>5s} {'threads':>7s} {'requests':>9s} "
          f"{'streams':>7s} {'inflight':>8s}")
    warm_until = args.warmup_fraction * args.seconds
    post = []
    for i, r in enumerate(rows):
        t = float(r["t_s"])
        warm = i == 0 or t < warm_until
        if not warm:
            post.append(r)
        print(f"{t:6.0f} {int(r['rss_kb']) / 1024:9.1f} {r['fds']:>5s} {r['threads']:>7s} "
              f"{r['requests']:>9s} {r['streams_active']:>7s} {r['inflight']:>8s}"
              f"{'  (warm-up)' if warm else ''}")
    if len(post) < 2:
        failures.append(f"fewer than 2 samples after the warm-up ({len(post)}): "
                        "lengthen SOAK_SECONDS or shorten SAMPLE_SECONDS")
        return
    rss = [int(r["rss_kb"]) for r in post]
    fds = [int(r["fds"]) for r in post]
    threads = [int(r["threads"]) for r in post]
    growth = (rss[-1] - rss[0]) / rss[0] * 100
    print(f"\nafter the warm-up (t >= {float(post[0]['t_s']):.0f} s, {len(post)} samples):")
    ok = growth < args.rss_limit_pct
    # Least-squares slope over the samples after the warm-up: not part of
    # the verdict (the target is last against first), but less noisy.
    ts = [float(r["t_s"]) for r in post]
    mt, mr = sum(ts) / len(ts), sum(rss) / len(rss)
    slope = (sum((t - mt) * (v - mr) for t, v in zip(ts, rss)) /
             max(1e-9, sum((t - mt) ** 2 for t in ts)))  # KiB per second
    fitted = slope * (ts[-1] - ts[0])
    print(f"  RSS   {rss[0] / 1024:.1f} -> {rss[-1] / 1024:.1f} MiB ({growth:+.2f}%, "
          f"target < {args.rss_limit_pct:g}%), max {max(rss) / 1024:.1f} MiB: "
          f"{'PASS' if ok else 'FAIL'}\n        (least-squares line over these samples: "
          f"{fitted / 1024:+.1f} MiB, {fitted / mr * 100:+.2f}%)")
    if not ok:
        failures.append(f"RSS grew {growth:+.2f}% after the warm-up "
                        f"({rss[0] / 1024:.1f} -> {rss[-1] / 1024:.1f} MiB; target < "
                        f"{args.rss_limit_pct:g}%)")
    for name, values, slack in (("fds", fds, args.fd_slack),
                                ("threads", threads, args.thread_slack)):
        spread = max(values) - min(values)
        ok = spread <= slack
        print(f"  {name:7s} min {min(values)} max {max(values)} first {values[0]} last "
              f"{values[-1]}: max - min {spread} (flat: <= {slack}, what the load's own "
              f"connections and streams move): {'PASS' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"{name} not flat after the warm-up: {min(values)}..{max(values)} "
                            f"(max - min {spread} > {slack}; first {values[0]}, last {values[-1]})")


def main_report(args):
    failures = []
    # What soak.sh itself found (a generator that hung or left no report, the
    # server's exit, sanitizer reports), one per line.
    noted = os.path.join(args.dir, "failures.txt")
    if os.path.exists(noted):
        failures += [line.strip() for line in open(noted) if line.strip()]
    path = os.path.join(args.dir, "load.json")
    if os.path.exists(path):
        load = json.load(open(path))
    else:
        failures.append("soak_load.py load left no load.json (see load.txt)")
        load = {"sources": [], "streams": []}
    perf, perf_streams = perf_sources(args.dir)
    sources = perf + load["sources"]
    streams = perf_streams + load["streams"]
    start = read_metrics(os.path.join(args.dir, "metrics-start.prom"))
    end = read_metrics(os.path.join(args.dir, "metrics-end.prom"))

    scale = load.get("scale", 1.0)
    print_sources("requests by source (client side)", sources, failures, scale, args.seconds)
    print_sources("streams by source (client side)", streams, failures, scale, args.seconds)

    server = collections.defaultdict(collections.Counter)
    for (model, code), n in delta(end, start, "clipserve_requests_total", "model", "code").items():
        server[model][code] += n
    compare("requests by model and code: load generators vs clipserve_requests_total",
            sources, server, failures, key=lambda s: s["model"])
    uncounted = collections.Counter()
    for s in sources:
        if not s["counted"]:
            uncounted.update(s["codes"])
    if uncounted:
        print("not in clipserve_requests_total (gRPC refused them over --max-request-bytes, "
              "before clipserve saw them): "
              + ", ".join(f"{k} {v}" for k, v in sorted(uncounted.items())))

    ended = collections.defaultdict(collections.Counter)
    for (code,), n in delta(end, start, "clipserve_streams_ended_total", "code").items():
        ended["(all)"][code] += n
    compare("streams by code: load generators vs clipserve_streams_ended_total",
            streams, ended, failures, key=lambda s: "(all)", noun="streams")

    # Nothing may be left over once the load has ended.
    left = {"clipserve_inflight_requests": sum(by(end, "clipserve_inflight_requests").values()),
            "clipserve_queue_depth": sum(by(end, "clipserve_queue_depth").values()),
            "clipserve_streams_active": sum(by(end, "clipserve_streams_active").values())}
    print("\nat the end: " + ", ".join(f"{k} {v:g}" for k, v in left.items()))
    for k, v in left.items():
        if v != 0:
            failures.append(f"{k} is {v:g} after the load ended (want 0)")

    resources(args, failures)

    print()
    if failures:
        print("verdict: FAIL")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("verdict: PASS (every request and stream accounted for, no unexpected code, "
          "RSS, fds and threads within target)")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--server", required=True)
    lo.add_argument("--seconds", type=float, required=True)
    lo.add_argument("--media", required=True)
    lo.add_argument("--json", required=True)
    lo.add_argument("--scale", type=float, default=1.0)
    lo.add_argument("--seed", type=int, default=1)
    lo.add_argument("--drain-seconds", type=float, default=60)
    re_ = sub.add_parser("report")
    re_.add_argument("dir")
    re_.add_argument("--seconds", type=float, required=True)
    re_.add_argument("--warmup-fraction", type=float, default=0.2)
    re_.add_argument("--rss-limit-pct", type=float, default=2.0)
    re_.add_argument("--fd-slack", type=int, default=8)
    re_.add_argument("--thread-slack", type=int, default=8)
    args = p.parse_args()
    if args.command == "load":
        if args.scale <= 0 or args.seconds <= 0:
            p.error("--scale and --seconds must be positive")
        return main_load(args)
    return main_report(args)


if __name__ == "__main__":
    sys.exit(main())
