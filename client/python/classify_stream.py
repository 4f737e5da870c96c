#!/usr/bin/python3
"""Streams a video through clipserve's ClassifyStream RPC and prints what the
model sees in each window.

  classify_stream.py --server HOST:PORT [--model NAME] [--window N]
      [--stride N] [--top-k K] [--every-window] [--realtime]
      [--replay-speed X] [--rtsp-tcp] [--stubs DIR] [--timeout S]
      FILE_OR_URL

FILE_OR_URL is either
  - a local file the client pushes in 64 KiB chunks: .ts (MPEG-TS),
    .h264/.264 (H.264 Annex B) or .hevc/.265 (H.265 Annex B). Without
    --realtime it is sent as fast as the server reads it (add --every-window,
    or the server drops windows that the model has not started when the next
    one is ready); with --realtime the bytes go out at the file's average
    bitrate (size / duration, the duration from ffprobe) in chunks of about
    40 ms of video, about as a camera would send them;
  - or a URL the server opens and pulls itself (rtsp://, rtsps://, http://,
    https://, udp://, file://). The server must allow it with
    --stream-source-prefix; file:// sources replay at their own frame rate
    (--replay-speed to change it, negative: as fast as possible).

Output: one line for StreamStarted, one per classified window (its number,
the decoded frames and presentation times it spans, its latency on the
server and the top classes with their probabilities and labels), one per
StreamEvent, and a summary. Exit 0 when the stream ends OK, 1 with the gRPC
status code and message otherwise (130 on Ctrl-C).

Examples:
  classify_stream.py --server localhost:8001 --every-window clip.ts
  classify_stream.py --server localhost:8001 --model i3d --realtime cam.h264
  classify_stream.py --server localhost:8001 rtsp://camera.local/stream1

Needs grpcio and protobuf (Debian: python3-grpcio, python3-protobuf). The
Python stubs are generated at start from the repository's
proto/clipserve/v1/video_classifier.proto with `python3 -m grpc_tools.protoc`
(Debian: python3-grpc-tools) into a temporary directory; --stubs DIR uses
stubs generated beforehand instead:

  python3 -m grpc_tools.protoc -I proto --python_out=DIR --grpc_python_out=DIR \\
      proto/clipserve/v1/video_classifier.proto
"""
import os

# Debian's grpc_tools bundles an old protoc (3.5.1) whose generated code the
# upb backend of newer protobuf releases rejects ("Descriptors cannot be
# created directly"). The pure-Python backend accepts it and is fast enough
# here. This must be set before google.protobuf is first imported.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import grpc  # noqa: E402

CHUNK_BYTES = 64 * 1024
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "file://")
# File name ending -> StreamOpen.Input name.
INPUT_BY_SUFFIX = {".ts": "MPEGTS", ".h264": "H264", ".264": "H264",
                   ".hevc": "HEVC", ".265": "HEVC"}
PROTO = os.path.join("clipserve", "v1", "video_classifier.proto")
DEFAULT_PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


# ---- stubs ------------------------------------------------------------------

def generate_stubs(out_dir, proto_root=DEFAULT_PROTO_ROOT):
    """Writes video_classifier_pb2.py and video_classifier_pb2_grpc.py for
    the repository's proto under out_dir/clipserve/v1/."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
           f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
           os.path.join(proto_root, PROTO)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): "
                           f"{r.stdout.decode(errors='replace').strip()}")


def load_stubs(stubs_dir=None, proto_root=DEFAULT_PROTO_ROOT):
    """Returns the modules (pb2, pb2_grpc): imported from stubs_dir, or
    generated into a temporary directory first."""
    if stubs_dir is None:
        with tempfile.TemporaryDirectory(prefix="clipserve-stubs-") as tmp:
            generate_stubs(tmp, proto_root)
            return _import_stubs(tmp)  # once imported, the files may go
    return _import_stubs(stubs_dir)


def _import_stubs(stubs_dir):
    sys.path.insert(0, os.path.abspath(stubs_dir))
    try:
        pb2 = importlib.import_module("clipserve.v1.video_classifier_pb2")
        pb2_grpc = importlib.import_module("clipserve.v1.video_classifier_pb2_grpc")
    finally:
        sys.path.pop(0)
    return pb2, pb2_grpc


# ---- what to send -----------------------------------------------------------

def is_url(source):
    return source.startswith(URL_SCHEMES)


def input_of(path):
    """The StreamOpen.Input name for a local file, by its name's ending."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in INPUT_BY_SUFFIX:
        raise ValueError(f"{path}: cannot tell the format from the name; want one of "
                         f"{', '.join(sorted(INPUT_BY_SUFFIX))} or a URL")
    return INPUT_BY_SUFFIX[ext]


def make_open(pb2, source=None, *, input=None, model="", version="", window=0, stride=0,
              top_k=0, every_window=False, replay_speed=0.0, rtsp_tcp=False):
    """The stream's first message. `source` a URL: the server pulls it;
    otherwise `input` ("MPEGTS", "H264", "HEVC", "RAW_RGB", ...) says what
    the client will push."""
    o = pb2.StreamOpen(model_name=model, model_version=version, window_frames=window,
                       stride_frames=stride, top_k=top_k, every_window=every_window)
    if source is not None and is_url(source):
        o.source_url = source
        o.source.replay_speed = replay_speed
        o.source.rtsp_tcp = rtsp_tcp
    else:
        o.input = pb2.StreamOpen.Input.Value(input)
    return pb2.StreamRequest(open=o)


def media_duration(path):
    """The file's duration in seconds, from ffprobe: the container's, or
    (Annex B streams have none) its frame count over its frame rate."""
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
         "-show_entries", "format=duration:stream=nb_read_packets,r_frame_rate",
         "-of", "json", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=True)
    info = json.loads(r.stdout)
    duration = info.get("format", {}).get("duration")
    if duration not in (None, "N/A"):
        return float(duration)
    stream = (info.get("streams") or [{}])[0]
    num, _, den = stream.get("r_frame_rate", "0/1").partition("/")
    fps = float(num) / float(den or 1)
    frames = int(stream.get("nb_read_packets", 0))
    if fps <= 0 or frames <= 0:
        raise ValueError(f"{path}: ffprobe finds no duration, frame rate or frames")
    return frames / fps


def file_chunks(pb2, path, bytes_per_second=None):
    """`data` messages with the file's bytes, CHUNK_BYTES each. Paced to
    bytes_per_second when given, in chunks of about 40 ms of the stream
    (at most CHUNK_BYTES), so that frames arrive about when they would live."""
    size = CHUNK_BYTES
    if bytes_per_second:
        size = max(1024, min(CHUNK_BYTES, int(bytes_per_second * 0.04)))
    start = time.monotonic()
    sent = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(size)
            if not chunk:
                return
            if bytes_per_second:
                # This chunk goes out when the bytes before it have "played".
                delay = start + sent / bytes_per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent += len(chunk)
            yield pb2.StreamRequest(data=chunk)


# ---- the call ---------------------------------------------------------------

def describe_started(s):
    return (f"started: model {s.model_name} (version {s.model_version}), windows of "
            f"{s.window_frames} frames every {s.stride_frames}, cropped to "
            f"{s.crop_height}x{s.crop_width}")


def describe_window(w):
    classes = ", ".join(f"{c.probability:.4f} #{c.class_index}" + (f" {c.label}" if c.label else "")
                        for c in w.classes)
    return (f"window {w.number}: frames {w.first_frame}-{w.last_frame} "
            f"({w.first_pts_us / 1e6:.3f}-{w.last_pts_us / 1e6:.3f} s), "
            f"{w.latency_us / 1e3:.1f} ms: {classes}")


def describe_event(pb2, e):
    return f"event {pb2.StreamEvent.Kind.Name(e.kind)}: {e.count} ({e.message})"


def run_stream(pb2, pb2_grpc, channel, open_request, inputs=(), *, timeout=None,
               out=sys.stdout, err=sys.stderr):
    """Runs one ClassifyStream call: sends open_request, then each message of
    `inputs` (then half-closes), and prints every answer to `out`. Returns
    the exit code: 0 when the stream ended OK, 1 (the status printed to
    `err`) otherwise.

    A pulled source (open_request.open.source_url) takes no input, and the
    client must not half-close early: to the server a half-close means "stop
    pulling". So for those the request side stays open until the answers end.
    """
    pulled = bool(open_request.open.source_url)
    answers_done = threading.Event()

    def requests():
        yield open_request
        if pulled:
            answers_done.wait()
            return
        for r in inputs:
            if answers_done.is_set():  # the server ended the stream
                return
            yield r

    stub = pb2_grpc.VideoClassifierStub(channel)
    call = stub.ClassifyStream(requests(), timeout=timeout)
    windows = events = 0
    try:
        for r in call:
            kind = r.WhichOneof("message")
            if kind == "started":
                print(describe_started(r.started), file=out, flush=True)
            elif kind == "window":
                windows += 1
                print(describe_window(r.window), file=out, flush=True)
            elif kind == "event":
                events += 1
                print(describe_event(pb2, r.event), file=out, flush=True)
    except grpc.RpcError as e:
        print(f"stream failed: {e.code().name}: {e.details()} (after {windows} windows)",
              file=err, flush=True)
        return 1
    except BaseException:  # e.g. KeyboardInterrupt: tell the server
        call.cancel()
        raise
    finally:
        answers_done.set()
    print(f"stream ended OK: {windows} windows, {events} events", file=out, flush=True)
    return 0


# ---- command line -----------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the top of this file for details.")
    ap.add_argument("--server", required=True, help="HOST:PORT of clipserve's gRPC port")
    ap.add_argument("--model", default="", help="model name (default: the server's default)")
    ap.add_argument("--version", default="", help="model version (default: the loaded one)")
    ap.add_argument("--window", type=int, default=0, metavar="N",
                    help="frames per window (default: the model's)")
    ap.add_argument("--stride", type=int, default=0, metavar="N",
                    help="frames between window starts (default: the window)")
    ap.add_argument("--top-k", type=int, default=0, metavar="K",
                    help="classes per window (default 5)")
    ap.add_argument("--every-window", action="store_true",
                    help="answer every window, however late (default: drop stale ones)")
    ap.add_argument("--realtime", action="store_true",
                    help="push a file at its average bitrate instead of at once")
    ap.add_argument("--replay-speed", type=float, default=0.0, metavar="X",
                    help="file:// URLs: replay at X times real time (negative: flat out)")
    ap.add_argument("--rtsp-tcp", action="store_true", help="rtsp:// URLs: interleaved TCP")
    ap.add_argument("--stubs", metavar="DIR",
                    help="pre-generated stubs (DIR/clipserve/v1/video_classifier_pb2*.py)")
    ap.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="deadline for the whole stream, seconds (default: none)")
    ap.add_argument("source", metavar="FILE_OR_URL")
    return ap.parse_args(argv)


def main(argv=None, out=sys.stdout, err=sys.stderr):
    args = parse_args(argv)
    pb2, pb2_grpc = load_stubs(args.stubs)
    inputs = ()
    if is_url(args.source):
        request = make_open(pb2, args.source, model=args.model, version=args.version,
                            window=args.window, stride=args.stride, top_k=args.top_k,
                            every_window=args.every_window, replay_speed=args.replay_speed,
                            rtsp_tcp=args.rtsp_tcp)
    else:
        try:
            kind = input_of(args.source)
            rate = None
            if args.realtime:
                rate = os.path.getsize(args.source) / media_duration(args.source)
            with open(args.source, "rb"):
                pass  # fail here, not inside gRPC's request thread
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            print(f"error: {e}", file=err)
            return 2
        request = make_open(pb2, input=kind, model=args.model, version=args.version,
                            window=args.window, stride=args.stride, top_k=args.top_k,
                            every_window=args.every_window)
        inputs = file_chunks(pb2, args.source, rate)
    with grpc.insecure_channel(args.server) as channel:
        return run_stream(pb2, pb2_grpc, channel, request, inputs, timeout=args.timeout,
                          out=out, err=err)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
