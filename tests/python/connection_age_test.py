#!/usr/bin/python3
"""Connection ageing and keepalive of the real clipserve, seen by a gRPC
client that balances round robin over a DNS name (what a client of the
chart's headless Service does).

  connection_age_test.py --server CLIPSERVE --bench-repo CLIPSERVE_BENCH_REPO
      --source-dir DIR

Why ageing matters: a gRPC client keeps its connections for as long as they
work, and resolves its target's name again only when one breaks. A client
that connected before a scale-out therefore never learns of the new pods,
unless the server closes connections now and then (GOAWAY after
--grpc-max-connection-age), which makes the client reconnect and resolve the
name again.

What proves it here:

- A DNS server inside this test (UDP on 127.0.0.1, a free port) answers A
  queries for its names from lists the test changes, and an empty NOERROR
  answer to anything else (AAAA, the TXT lookup for a service config). The
  client's target is dns://127.0.0.1:DNSPORT/NAME:PORT with round_robin and
  a short grpc.dns_min_time_between_resolutions_ms. gRPC's c-ares resolver
  (grpcio's default; the test forces it with GRPC_DNS_RESOLVER=ares) sends
  its queries to the DNS server the target's authority names; the native
  resolver would ignore the authority, so the c-ares one is required. A
  static list of addresses would prove nothing: gRPC keeps trying every
  address of such a list by itself.
- "Scale-out": server A serves 127.0.0.1:P and the name resolves to
  127.0.0.1 only; the client connects and every call lands on A. Then server
  B starts on 127.0.0.2:P (Linux routes all of 127/8 to loopback) and the
  name resolves to both. Where each call landed is read from each server's
  own Prometheus endpoint (clipserve_requests_total of the model).
- Ageing on (--grpc-max-connection-age 2 on both): within a bounded time
  calls reach B, and afterwards both servers take calls; no call fails (a
  GOAWAY lets calls in flight finish).
- Control, ageing off (--grpc-max-connection-age 0), everything else equal:
  over at least as long as the aged case needed (twice that, at least 10 s
  or five ages), every call stays on A. So it is the ageing that moves
  clients, not something else in the client.
- Keepalive enforcement: a client that pings every second on an open
  ModelStreamInfer stream gets GOAWAY "too_many_pings" from a server with
  the default minimum ping interval (10 s): the stream ends UNAVAILABLE.
  The same client against a server started with
  --grpc-keepalive-min-ping-interval 0 keeps its stream for 12 s and
  closes it OK.
- Bad values of the six flags are usage errors (exit 64) naming the flag.

Nothing asserts a duration beyond "within N seconds" (N generous, for a
loaded 2-core machine). Everything it starts is stopped at the end, also on
failure or a signal (servers also get SIGKILL should this script die).
Loopback only. Exit 0: pass, 1: fail. Nothing is skipped.

The protobuf runtime: as in kserve_client_test.py (the generated code of
Debian's grpc_tools needs the python backend, pinned before any import of
google.protobuf).
"""
import os

# Before any import of google.protobuf: see kserve_client_test.py.
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
# The c-ares resolver is the one that honours dns://SERVER/ (see above); set
# before grpc is imported, it overrides a GRPC_DNS_RESOLVER=native from the
# environment.
os.environ["GRPC_DNS_RESOLVER"] = "ares"

import argparse  # noqa: E402
import importlib  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import grpc  # noqa: E402

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
import live_util  # noqa: E402
from live_util import Children, Failure, check, install_signal_handlers, log  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kserve_model import RPC_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, Model, run_tool  # noqa: E402

AGE_SECONDS = 2            # --grpc-max-connection-age of the aged case
REACH_TIMEOUT = 60.0       # seconds for an aged client to reach the new server (30 ages)
CONTROL_MIN_SECONDS = 10.0  # the control case calls at least this long
BOTH_SECONDS = 3.0         # after reaching B: calls must land on both servers
CALL_INTERVAL = 0.05       # seconds between calls
KEEPALIVE_SECONDS = 12.0   # the tolerated pinging stream stays open this long
GOAWAY_TIMEOUT = 30.0      # seconds for the too_many_pings GOAWAY (~4 s)
A_HOST, B_HOST = "127.0.0.1", "127.0.0.2"


# ---- a DNS server -------------------------------------------------------------

class DnsServer:
    """Answers A queries for the names in `records` (name -> [IPv4]) over UDP
    on 127.0.0.1; everything else, and unknown names, get an empty NOERROR
    answer. TTL 0 (gRPC's resolver ignores TTLs anyway: it resolves again
    only when asked to). Counts the A queries per name."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.records = {}
        self.a_queries = {}
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self.thread.start()
        log(f"DNS server on 127.0.0.1:{self.port} (UDP)")

    def set(self, name, addresses):
        with self.lock:
            self.records[name.lower()] = list(addresses)
        log(f"DNS: {name} -> {', '.join(addresses)}")

    def queries(self, name):
        with self.lock:
            return self.a_queries.get(name.lower(), 0)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()

    @staticmethod
    def parse_question(msg):
        """(id, flags, name, qtype, end of the question) of a query."""
        qid, flags, qdcount = struct.unpack(">HHH", msg[:6])
        if qdcount != 1:
            raise ValueError(f"{qdcount} questions")
        labels, i = [], 12
        while msg[i] != 0:
            n = msg[i]
            if n & 0xC0:
                raise ValueError("compressed name in a question")
            labels.append(msg[i + 1:i + 1 + n].decode("ascii"))
            i += 1 + n
        i += 1
        qtype, _qclass = struct.unpack(">HH", msg[i:i + 4])
        return qid, flags, ".".join(labels).lower(), qtype, i + 4

    def _serve(self):
        while not self.stopping:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                qid, flags, name, qtype, end = self.parse_question(msg)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                continue  # not a query we understand: no answer
            with self.lock:
                addresses = list(self.records.get(name, [])) if qtype == 1 else []
                if qtype == 1:
                    self.a_queries[name] = self.a_queries.get(name, 0) + 1
            # QR, the query's opcode and RD, RA; NOERROR. The question is
            # echoed (without any additional records the query carried).
            header = struct.pack(">HHHHHH", qid, 0x8080 | (flags & 0x7900), 1,
                                 len(addresses), 0, 0)
            answers = b"".join(struct.pack(">HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(a)
                               for a in addresses)
            try:
                self.sock.sendto(header + msg[12:end] + answers, peer)
            except OSError:
                pass


# ---- servers ------------------------------------------------------------------

def shared_port(hosts):
    """A TCP port free on every one of `hosts` (just now)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((h, port))
            return port
        except OSError:
            continue
    raise Failure(f"no port free on all of {hosts}")


class Clipserve:
    def __init__(self, proc, name, host, port, metrics_port):
        self.proc, self.name, self.host = proc, name, host
        self.port, self.metrics_port = port, metrics_port

    def requests(self, model):
        """clipserve_requests_total of `model`, summed over its codes."""
        _, text = live_util.http_get(f"http://{self.host}:{self.metrics_port}/metrics")
        total = 0.0
        for m in re.finditer(r"^clipserve_requests_total\{([^}]*)\} ([^ \n]+)", text, re.M):
            if f'model="{model}"' in m.group(1):
                total += float(m.group(2))
        return int(total)


def start_servers(children, server, repo, tmp, specs):
    """Starts one clipserve per (name, host, port, flags) at once (they load
    in parallel), each with its metrics on the same host, port 0; returns
    them once each has logged its ports."""
    started = []
    for name, host, port, flags in specs:
        log_path = os.path.join(tmp, f"{name}.log")
        proc = children.start(name, [server, "--model-repository", repo,
                                     "--grpc-address", host, "--grpc-port", str(port),
                                     "--metrics-port", "0"] + flags, log_path)
        started.append((name, host, proc, log_path))
    out = []
    for name, host, proc, log_path in started:
        grpc_port, metrics_port = live_util.wait_for_ports(proc, name, log_path, START_TIMEOUT)
        log(f"{name}: gRPC {host}:{grpc_port}, metrics http://{host}:{metrics_port}/metrics")
        out.append(Clipserve(proc, name, host, grpc_port, metrics_port))
    return out


def stop_servers(children, servers):
    # One at a time: Children.stop sends the SIGTERM (a second one would end
    # a draining server at once, with status 1).
    for s in servers:
        rc = children.stop(s.proc, timeout=STOP_TIMEOUT)
        check(rc == 0, f"{s.name} drains and exits 0 on SIGTERM (got {rc})")


# ---- the client ---------------------------------------------------------------

def compile_protos(source_dir, out_dir):
    """grpc_tools.protoc on inference/grpc_service.proto; returns (pb2, pb2_grpc)."""
    proto_root = os.path.join(source_dir, "proto")
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen)
    run_tool([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
              f"--python_out={gen}", f"--grpc_python_out={gen}"] +
             [os.path.join(proto_root, "inference", f)
              for f in ("grpc_service.proto", "model_config.proto")],
             "grpc_tools.protoc (inference/grpc_service.proto)")
    sys.path.insert(0, gen)
    return (importlib.import_module("inference.grpc_service_pb2"),
            importlib.import_module("inference.grpc_service_pb2_grpc"))


class Caller:
    """A round-robin channel to dns://DNS/NAME:PORT and the one cheap call it
    makes: ModelInfer of one all-zero uint8 clip of the model."""

    def __init__(self, pb2, pb2_grpc, model, dns, name, port):
        target = f"dns://127.0.0.1:{dns.port}/{name}:{port}"
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.lb_policy_name", "round_robin"),
            # Re-resolution when a connection goes away, not 30 s later.
            ("grpc.dns_min_time_between_resolutions_ms", 200),
            # Loopback only, whatever *_proxy the environment sets.
            ("grpc.enable_http_proxy", 0),
        ])
        log(f"client channel: {target} (round_robin)")
        self.stub = pb2_grpc.GRPCInferenceServiceStub(self.channel)
        r = pb2.ModelInferRequest(model_name=model.name)
        shape = model.u8_shape(1)
        r.inputs.add(name=model.input_name, datatype="UINT8", shape=shape)
        n = 1
        for d in shape:
            n *= d
        r.raw_input_contents.append(bytes(n))
        self.request = r
        self.calls = 0
        self.failures = []

    def call(self):
        self.calls += 1
        try:
            self.stub.ModelInfer(self.request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            self.failures.append(f"{e.code().name}: {e.details()}")
            log(f"call {self.calls} failed: {e.code().name}: {e.details()}")

    def close(self):
        self.channel.close()


def name_of(label):
    return f"{label}.clipserve.test"


def scale_out(args, children, tmp, dns, protos, model, label, age):
    """Starts A (every server with --grpc-max-connection-age `age`), points
    the name at it, connects a client that calls A five times; then starts B
    on the same port of another address and points the name at both.
    Returns (client, A, B, the name's A queries before the scale-out)."""
    name = name_of(label)
    port = shared_port([A_HOST, B_HOST])
    flags = ["--grpc-max-connection-age", str(age)]
    (a,) = start_servers(children, args.server, args.repo, tmp,
                         [(f"{label}-A", A_HOST, port, flags)])
    dns.set(name, [A_HOST])
    caller = Caller(*protos, model, dns, name, port)
    try:
        for _ in range(5):
            caller.call()
        check(not caller.failures and a.requests(model.name) == 5,
              f"{label}: before the scale-out all 5 calls land on A "
              f"(A counted {a.requests(model.name)}, failures {caller.failures})")
        queries_before = dns.queries(name)

        (b,) = start_servers(children, args.server, args.repo, tmp,
                             [(f"{label}-B", B_HOST, port, flags)])
        dns.set(name, [A_HOST, B_HOST])
        return caller, a, b, queries_before
    except BaseException:
        caller.close()
        raise


def calls_until(caller, stop, poll_every=0.5):
    """Calls every CALL_INTERVAL until stop() is true (checked every
    poll_every seconds); returns the seconds it took."""
    start = time.monotonic()
    next_poll = start
    while True:
        now = time.monotonic()
        if now >= next_poll:
            if stop(now - start):
                return now - start
            next_poll = now + poll_every
        caller.call()
        time.sleep(CALL_INTERVAL)


def test_aged(args, children, tmp, dns, protos, model):
    caller, a, b, queries_before = scale_out(args, children, tmp, dns, protos, model,
                                             "aged", AGE_SECONDS)
    try:
        a0, calls0 = a.requests(model.name), caller.calls
        check(b.requests(model.name) == 0, "aged: B has served nothing yet")
        took = calls_until(caller, lambda t: b.requests(model.name) > 0 or t > REACH_TIMEOUT)
        reached = b.requests(model.name)
        check(reached > 0,
              f"aged: with --grpc-max-connection-age {AGE_SECONDS}, calls of the client "
              f"connected before the scale-out reach B within {REACH_TIMEOUT:.0f} s "
              f"(after {took:.1f} s: B {reached}, A {a.requests(model.name) - a0} "
              f"of {caller.calls - calls0} calls)")
        log(f"aged: the client re-resolved {dns.queries(name_of('aged')) - queries_before} "
            f"time(s) since the scale-out")
        a1, b1, calls1 = a.requests(model.name), b.requests(model.name), caller.calls
        calls_until(caller, lambda t: t > BOTH_SECONDS)
        da, db, dc = a.requests(model.name) - a1, b.requests(model.name) - b1, caller.calls - calls1
        check(da > 0 and db > 0 and da + db == dc,
              f"aged: then both servers take calls, round robin "
              f"(of {dc} calls in {BOTH_SECONDS:.0f} s: A {da}, B {db})")
        check(not caller.failures,
              f"aged: no call failed across {caller.calls} calls and the GOAWAYs "
              f"(failures: {caller.failures[:3]})")
    finally:
        caller.close()
    stop_servers(children, [a, b])
    return took


def test_control(args, children, tmp, dns, protos, model, aged_took):
    window = max(CONTROL_MIN_SECONDS, 5 * AGE_SECONDS, 2 * aged_took)
    caller, a, b, queries_before = scale_out(args, children, tmp, dns, protos, model,
                                             "control", 0)
    try:
        a0, calls0 = a.requests(model.name), caller.calls
        calls_until(caller, lambda t: t > window)
        da, db, dc = a.requests(model.name) - a0, b.requests(model.name), caller.calls - calls0
        check(not caller.failures, f"control: no call failed (failures: {caller.failures[:3]})")
        check(db == 0 and da == dc,
              f"control: with --grpc-max-connection-age 0, over {window:.1f} s (the aged "
              f"client reached B in {aged_took:.1f} s) every call stays on A "
              f"(A {da}, B {db} of {dc} calls)")
        log(f"control: the client re-resolved {dns.queries(name_of('control')) - queries_before} "
            f"time(s) since the scale-out")
    finally:
        caller.close()
    stop_servers(children, [a, b])


# ---- keepalive enforcement ------------------------------------------------------

def pinging_stream(pb2_grpc, port):
    """Opens ModelStreamInfer from a client that pings every second (and
    never stops for lack of data), sending nothing on it. Returns (channel,
    request queue, result dict, reader thread): the thread fills the dict
    with the stream's final code and details, and when it ended."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_http_proxy", 0),
    ])
    grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
    requests = queue.Queue()

    def request_iter():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    call = pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
        request_iter(), timeout=GOAWAY_TIMEOUT + KEEPALIVE_SECONDS + 60)
    result = {}
    started = time.monotonic()

    def read():
        try:
            for _ in call:
                pass
            result["code"], result["details"] = call.code(), call.details()
        except grpc.RpcError as e:
            result["code"], result["details"] = e.code(), e.details()
        result["after"] = time.monotonic() - started

    reader = threading.Thread(target=read, name="stream-reader", daemon=True)
    reader.start()
    return channel, requests, result, reader


def test_keepalive(args, children, tmp, protos):
    _, pb2_grpc = protos
    strict, lenient = start_servers(children, args.server, args.repo, tmp, [
        ("keepalive-default", A_HOST, 0, ["--grpc-max-connection-age", "0"]),
        ("keepalive-any-rate", A_HOST, 0, ["--grpc-max-connection-age", "0",
                                           "--grpc-keepalive-min-ping-interval", "0"]),
    ])
    ch1, q1, r1, t1 = pinging_stream(pb2_grpc, strict.port)
    ch2, q2, r2, t2 = pinging_stream(pb2_grpc, lenient.port)
    try:
        t1.join(GOAWAY_TIMEOUT)
        check(not t1.is_alive() and r1.get("code") == grpc.StatusCode.UNAVAILABLE,
              f"keepalive: a client pinging every second on an open stream gets GOAWAY from "
              f"a server with the default minimum ping interval (10 s): its stream ends "
              f"UNAVAILABLE within {GOAWAY_TIMEOUT:.0f} s (got {r1})")
        log(f"keepalive: stream ended after {r1.get('after', 0):.1f} s: {r1.get('details')!r}")
        t2.join(max(0.0, KEEPALIVE_SECONDS - r1.get("after", 0)))
        check(t2.is_alive() and not r2,
              f"keepalive: the same client against --grpc-keepalive-min-ping-interval 0 "
              f"keeps its stream for {KEEPALIVE_SECONDS:.0f} s (got {r2})")
        q2.put(None)
        t2.join(RPC_TIMEOUT)
        check(r2.get("code") == grpc.StatusCode.OK,
              f"keepalive: and its stream ends OK when the client half-closes (got {r2})")
    finally:
        q1.put(None)
        q2.put(None)
        ch1.close()
        ch2.close()
    stop_servers(children, [strict, lenient])


def test_flag_errors(args):
    """Bad values of the connection flags (and of the other limits' flags) are
    usage errors (exit 64) naming the flag."""
    for flags, message in (
            (["--grpc-max-connection-age", "2m"], "--grpc-max-connection-age must be a number"),
            (["--grpc-max-connection-age-grace", "-1"],
             "--grpc-max-connection-age-grace must be a number"),
            (["--grpc-keepalive-time", "1.5"], "--grpc-keepalive-time must be a number"),
            (["--grpc-keepalive-timeout", "0"], "--grpc-keepalive-timeout must be a number in 1.."),
            (["--grpc-keepalive-min-ping-interval", "x"],
             "--grpc-keepalive-min-ping-interval must be a number"),
            (["--grpc-keepalive-permit-without-calls", "yes"],
             "--grpc-keepalive-permit-without-calls must be true or false"),
            (["--grpc-max-concurrent-streams", "-1"],
             "--grpc-max-concurrent-streams must be a number in 0.."),
            (["--model-hang-seconds", "0.01"],
             "--model-hang-seconds must be 0 or seconds in 0.05..86400"),
            (["--video-uri-timeout-seconds", "0"],
             "--video-uri-timeout-seconds must be a number in 1.."),
            (["--video-decode-timeout-seconds", "0"],
             "--video-decode-timeout-seconds must be seconds in 1e-06..86400"),
            (["--video-decode-timeout-seconds", "soon"],
             "--video-decode-timeout-seconds must be seconds in 1e-06..86400")):
        p = subprocess.run([args.server] + flags, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60, preexec_fn=live_util.die_with_parent)
        check(p.returncode == 64 and message in p.stderr,
              f"{' '.join(flags)}: usage error 64 naming the flag "
              f"(got {p.returncode}: {p.stderr.splitlines()[:1]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the clipserve binary")
    ap.add_argument("--bench-repo", required=True, help="the clipserve-bench-repo binary")
    ap.add_argument("--source-dir", required=True, help="the project's source directory")
    ap.add_argument("--model", default="micro", help="benchmark model to call")
    args = ap.parse_args()
    install_signal_handlers()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clipserve-connection-age-test-")
    children = Children()
    dns = None
    ok = False
    try:
        protos = compile_protos(args.source_dir, tmp)
        full = os.path.join(tmp, "bench")
        run_tool([args.bench_repo, full], "clipserve-bench-repo")
        # Only the model called: each server start loads less.
        args.repo = os.path.join(tmp, "models")
        os.makedirs(args.repo)
        shutil.copytree(os.path.join(full, args.model), os.path.join(args.repo, args.model))
        model = Model(args.repo, args.model)
        test_flag_errors(args)
        dns = DnsServer()

        aged_took = test_aged(args, children, tmp, dns, protos, model)
        test_control(args, children, tmp, dns, protos, model, aged_took)
        test_keepalive(args, children, tmp, protos)
        ok = True
        log(f"PASS: {live_util.CHECKS[0]} checks in {time.monotonic() - started:.1f} s")
        return 0
    except Failure as e:
        log(f"FAIL: {e}")
        return 1
    except grpc.RpcError as e:
        log(f"FAIL: unexpected RPC error {e.code().name}: {e.details()}")
        return 1
    finally:
        if dns is not None:
            dns.stop()
        live_util.finish(children, tmp, failed=not ok, keep=False)


if __name__ == "__main__":
    sys.exit(main())
