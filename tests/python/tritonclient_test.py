#!/usr/bin/env python3
"""Triton's own Python client, tritonclient.grpc (PyPI, pinned in
scripts/requirements/venv.txt), against the real clipserve binary's Open
Inference Protocol endpoint: every RPC the client drives, with Triton's own
generated protobuf code (tritonclient.grpc.service_pb2) on the wire.

  tritonclient_test.py --server CLIPSERVE --bench-repo CLIPSERVE_BENCH_REPO
      [--model micro]

Run with the project's venv Python (.venv/bin/python), which has
tritonclient[grpc]. It writes the benchmark model repository
(clipserve-bench-repo), starts clipserve on 127.0.0.1 with --grpc-port 0
--metrics-port 0 (tests/deploy/live_util.py), and on the "micro" model
(4 x 16 x 16 clips, max_batch_size 8: cheap on a CPU) checks:

- health and metadata: is_server_live/ready, is_model_ready,
  get_server_metadata (extensions), get_model_metadata (one input, the
  declared FP32 form), get_model_config (Triton's ModelConfig, also as JSON),
  against the model's config.pbtxt read independently;
- infer with raw tensors (InferInput.set_data_from_numpy) in both forms the
  input takes (UINT8 frames, FP32 normalised) and, since tritonclient's
  InferInput sends raw bytes only, typed contents through tritonclient's own
  service_pb2 stub: the same logits every way; probabilities are the
  logits' softmax and sum to 1; a batch of 3 answers row i as clip i alone;
  requested outputs only, in order; priority and timeout honoured;
- async_infer, and streaming (start_stream / async_stream_infer /
  stop_stream) with a bad request in the middle answered with its error
  while the stream goes on;
- errors as tritonclient raises them (InferenceServerException.status()):
  unknown model or version NOT_FOUND; wrong shape, datatype, batch size,
  priority or timeout INVALID_ARGUMENT; a timeout that passes in the queue
  DEADLINE_EXCEEDED;
- get_inference_statistics: exactly the requests, clips, executions and
  failures this test caused (it is the only client), batch_stats per batch
  size adding up to execution_count, durations that add up;
- SIGTERM: the server drains and exits 0.

Then Triton's model repository extension as a Triton user drives it (the
first server, started with neither --admin-token-file nor
--repository-api-open, refuses it with PERMISSION_DENIED): a second
clipserve with --model-control-mode explicit --load-model tiny-b1
--admin-token-file (a 32-character token):

- get_model_repository_index with the token: every model of the repository,
  tiny-b1 version 1 READY, the others UNAVAILABLE "not loaded"; without the
  token, with a wrong one or without "Bearer ", PERMISSION_DENIED (the
  token sent never echoed), also for load_model and unload_model;
- load_model("no_such_model") NOT_FOUND; load_model of the model, then
  is_model_ready True and inference with the first server's logits;
  unload_model, then is_model_ready False (a known model not served),
  inference NOT_FOUND and the index back at "not loaded";
- get_server_metadata lists the extension model_repository; SIGTERM: exit 0.

Everything it starts is stopped at the end, also on failure or a signal.
Loopback only; every wait and RPC is bounded. Exit 0: pass, 1: fail. Nothing
is skipped.
"""
import argparse
import functools
import os
import queue
import secrets
import sys
import tempfile
import time

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
# Children that die with the test, the server on ports 0 (tests/deploy).
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
sys.path.insert(0, HERE)
import live_util  # noqa: E402
from live_util import Children, Failure, check, install_signal_handlers, log  # noqa: E402
from kserve_model import (ATOL, RPC_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT,  # noqa: E402
                          STREAM_TIMEOUT, UNKNOWN_MODEL, UNKNOWN_VERSION, Model,
                          max_diff, run_tool, softmax, to_fp32)



class Ledger:
    """What this test did to the model, to hold the server's statistics to:
    requests answered OK (and their clips), requests of the model answered
    with an error."""

    def __init__(self):
        self.ok = 0
        self.clips = 0
        self.failed = 0

    def good(self, clips):
        self.ok += 1
        self.clips += clips

    def bad(self):
        self.failed += 1


def expect_error(what, status, call, *needles):
    """`call()` must raise InferenceServerException with status() `status`
    (e.g. "StatusCode.NOT_FOUND") and a message containing each needle."""
    try:
        call()
    except InferenceServerException as e:
        msg = e.message() or ""
        naming = f" naming {', '.join(repr(n) for n in needles)}" if needles else ""
        check(e.status() == status and all(n in msg for n in needles),
              f"{what}: {status}{naming} (got {e.status()}: {msg!r})")
        return
    raise Failure(f"{what}: succeeded, want {status}")


NOT_FOUND = "StatusCode.NOT_FOUND"
INVALID = "StatusCode.INVALID_ARGUMENT"
DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
DENIED = "StatusCode.PERMISSION_DENIED"
EXTENSIONS = ["model_configuration", "statistics", "model_repository"]


def clip_input(model, data):
    """An InferInput for `data`: UINT8 frames [B, T, H, W, C] or FP32 [B, C, T, H, W]."""
    datatype = "UINT8" if data.dtype == np.uint8 else "FP32"
    t = grpcclient.InferInput(model.input_name, list(data.shape), datatype)
    t.set_data_from_numpy(data)
    return t


def outputs(*names):
    return [grpcclient.InferRequestedOutput(n) for n in names]


def logits_of(result, model, rows):
    """The logits of an InferResult, checked for shape and finiteness."""
    a = result.as_numpy(model.logits_name)
    if a is None or a.dtype != np.float32 or a.shape != (rows, model.classes):
        raise Failure(f"logits: want float32 [{rows}, {model.classes}], got "
                      f"{None if a is None else (a.dtype, a.shape)}")
    if not np.all(np.isfinite(a)):
        raise Failure("logits: not all finite")
    return a


# ---- the checks ---------------------------------------------------------------

def test_health_and_metadata(client, model, other):
    check(client.is_server_live(client_timeout=RPC_TIMEOUT), "is_server_live: True")
    check(client.is_server_ready(client_timeout=RPC_TIMEOUT), "is_server_ready: True")
    for version in ("", "1"):
        check(client.is_model_ready(model.name, version, client_timeout=RPC_TIMEOUT),
              f"is_model_ready({model.name!r}, {version!r}): True")
    # clipserve answers NOT_FOUND for a model it does not serve (Triton
    # answers ready: false); tritonclient raises it.
    expect_error("is_model_ready of an unknown model", NOT_FOUND,
                 lambda: client.is_model_ready(UNKNOWN_MODEL, client_timeout=RPC_TIMEOUT),
                 UNKNOWN_MODEL)

    md = client.get_server_metadata(client_timeout=RPC_TIMEOUT)
    check(md.name == "clipserve" and md.version != "" and list(md.extensions) == EXTENSIONS,
          f"get_server_metadata: clipserve, a version, extensions {EXTENSIONS} "
          f"(got {md.name!r}, {md.version!r}, {list(md.extensions)})")
    js = client.get_server_metadata(as_json=True, client_timeout=RPC_TIMEOUT)
    check(js.get("name") == "clipserve", f"get_server_metadata(as_json=True): {js}")

    for m in (model, other):
        md = client.get_model_metadata(m.name, client_timeout=RPC_TIMEOUT)
        inputs = [(t.name, t.datatype, list(t.shape)) for t in md.inputs]
        outs = [(t.name, t.datatype, list(t.shape)) for t in md.outputs]
        want_in = [(m.input_name, "FP32", [-1] + m.f32_shape(1)[1:])]
        want_out = [(m.logits_name, "FP32", [-1, m.classes]),
                    ("probabilities", "FP32", [-1, m.classes])]
        check(md.name == m.name and list(md.versions) == ["1"] and md.platform == m.backend,
              f"get_model_metadata {m.name}: name, versions ['1'], platform {m.backend!r}")
        check(inputs == want_in, f"get_model_metadata {m.name}: inputs {want_in} (got {inputs})")
        check(outs == want_out, f"get_model_metadata {m.name}: outputs {want_out} (got {outs})")
    expect_error("get_model_metadata of an unknown model", NOT_FOUND,
                 lambda: client.get_model_metadata(UNKNOWN_MODEL, client_timeout=RPC_TIMEOUT),
                 UNKNOWN_MODEL)
    expect_error("get_model_metadata of an unknown version", NOT_FOUND,
                 lambda: client.get_model_metadata(model.name, UNKNOWN_VERSION,
                                                   client_timeout=RPC_TIMEOUT),
                 f"'{UNKNOWN_VERSION}'")

    for m in (model, other):
        cfg = client.get_model_config(m.name, client_timeout=RPC_TIMEOUT).config
        fp32 = model_config_pb2.TYPE_FP32
        got = (cfg.name, cfg.backend, cfg.platform, cfg.max_batch_size,
               [(t.name, t.data_type, list(t.dims)) for t in cfg.input],
               [(t.name, t.data_type, list(t.dims)) for t in cfg.output])
        want = (m.name, m.backend, m.backend, m.max_batch_size,
                [(m.input_name, fp32, m.f32_shape(1)[1:])],
                [(m.logits_name, fp32, [m.classes]), ("probabilities", fp32, [m.classes])])
        check(got == want, f"get_model_config {m.name}: {want} (got {got})")
        b = cfg.dynamic_batching
        check(cfg.WhichOneof("scheduling_choice") == "dynamic_batching"
              and b.max_queue_delay_microseconds == m.max_queue_delay_us
              and b.priority_levels == m.levels
              and b.default_priority_level == (m.levels + 1) // 2
              and b.default_queue_policy.allow_timeout_override,
              f"get_model_config {m.name}: dynamic_batching with the config's delay "
              f"({m.max_queue_delay_us} us) and priority levels ({m.levels})")
        groups = [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind))
                  for g in cfg.instance_group]
        check(groups == [(1, "KIND_CPU")],
              f"get_model_config {m.name}: one CPU instance (got {groups})")
        check(cfg.version_policy.WhichOneof("policy_choice") == "latest"
              and cfg.version_policy.latest.num_versions == 1,
              f"get_model_config {m.name}: version_policy latest 1")
    js = client.get_model_config(model.name, as_json=True, client_timeout=RPC_TIMEOUT)
    check(js["config"]["name"] == model.name
          and js["config"]["max_batch_size"] == model.max_batch_size
          and js["config"]["input"][0]["data_type"] == "TYPE_FP32",
          f"get_model_config(as_json=True): name, max_batch_size, input data_type "
          f"(got {js['config'].get('name')!r}, {js['config'].get('max_batch_size')!r})")
    expect_error("get_model_config of an unknown model", NOT_FOUND,
                 lambda: client.get_model_config(UNKNOWN_MODEL, client_timeout=RPC_TIMEOUT),
                 UNKNOWN_MODEL)
    expect_error("get_model_config of an unknown version", NOT_FOUND,
                 lambda: client.get_model_config(model.name, UNKNOWN_VERSION,
                                                 client_timeout=RPC_TIMEOUT),
                 f"'{UNKNOWN_VERSION}'")


def test_infer(client, stub, model, clips, ledger):
    """Raw UINT8 and FP32 through tritonclient, typed UINT8 and FP32 through
    its service_pb2 stub, batches, outputs, parameters. Returns the
    reference logits of each clip (raw UINT8, alone)."""
    m = model
    ref = []
    for i in range(len(clips)):
        r = client.infer(m.name, [clip_input(m, clips[i:i + 1])], request_id=f"u8-{i}",
                         client_timeout=RPC_TIMEOUT)
        ledger.good(1)
        resp = r.get_response()
        check(resp.id == f"u8-{i}" and resp.model_name == m.name and resp.model_version == "1",
              f"infer UINT8 clip {i}: id, model and version echoed "
              f"(got {resp.id!r}, {resp.model_name!r}, {resp.model_version!r})")
        check([o.name for o in resp.outputs] == [m.logits_name, "probabilities"],
              f"infer UINT8 clip {i}: both outputs by default")
        logits = logits_of(r, m, 1)
        probs = r.as_numpy("probabilities")
        sums = probs.astype(np.float64).sum(axis=1)
        check(np.all(np.abs(sums - 1) < 1e-5) and np.all(probs >= 0),
              f"infer UINT8 clip {i}: probabilities sum to 1 (got {sums})")
        d = max_diff(probs, softmax(logits))
        check(d < 1e-5, f"infer UINT8 clip {i}: probabilities are softmax(logits) ({d:.2e})")
        params = {k: v.int64_param for k, v in resp.parameters.items()}
        check(set(params) >= {"queue_us", "compute_us", "batch_size"}
              and params["compute_us"] > 0 and 1 <= params["batch_size"] <= m.max_batch_size,
              f"infer UINT8 clip {i}: response parameters queue_us, compute_us, "
              f"batch_size ({params})")
        ref.append(logits[0])
    spread = min(max_diff(ref[i], ref[j]) for i in range(len(ref)) for j in range(i))
    check(spread > 100 * ATOL,
          f"different clips give different logits (min pairwise max diff {spread:.3g})")

    clip0 = clips[:1]
    r = client.infer(m.name, [clip_input(m, to_fp32(clip0))], client_timeout=RPC_TIMEOUT)
    ledger.good(1)
    d = max_diff(logits_of(r, m, 1)[0], ref[0])
    check(d < ATOL, f"infer FP32 (the listed form): the same logits as UINT8 ({d:.2e})")

    # Typed contents: tritonclient's InferInput sends raw bytes only; its
    # generated stub carries typed tensors (as Triton's explicit-content
    # examples do).
    for what, data in (("typed UINT8", clip0), ("typed FP32", to_fp32(clip0))):
        req = service_pb2.ModelInferRequest(model_name=m.name, id=what)
        t = req.inputs.add(name=m.input_name, datatype="UINT8" if data.dtype == np.uint8
                           else "FP32", shape=list(data.shape))
        if data.dtype == np.uint8:
            t.contents.uint_contents.extend(int(v) for v in data.reshape(-1))
        else:
            t.contents.fp32_contents.extend(data.reshape(-1).tolist())
        resp = stub.ModelInfer(req, timeout=RPC_TIMEOUT)
        ledger.good(1)
        check(len(resp.raw_output_contents) == 0
              and [o.name for o in resp.outputs] == [m.logits_name, "probabilities"],
              f"{what}: answered typed, both outputs")
        got = np.array(resp.outputs[0].contents.fp32_contents, dtype=np.float32)
        d = max_diff(got, ref[0])
        check(got.shape == (m.classes,) and d < ATOL,
              f"{what}: the same logits as raw UINT8 ({d:.2e})")
        # A typed request is answered typed (the protocol allows either form;
        # Triton always answers raw, and tritonclient's InferResult.as_numpy
        # reads raw answers only, which is what its own raw requests get).
        probs = np.array(resp.outputs[1].contents.fp32_contents, dtype=np.float32)
        d = max_diff(probs[None, :], softmax(got[None, :]))
        check(d < 1e-5, f"{what}: typed probabilities are the typed logits' softmax ({d:.2e})")

    # A batch of 3, both forms: row i is clip i alone.
    for what, data in (("UINT8", clips[:3]), ("FP32", to_fp32(clips[:3]))):
        r = client.infer(m.name, [clip_input(m, data)], client_timeout=RPC_TIMEOUT)
        ledger.good(3)
        logits = logits_of(r, m, 3)
        d = max(max_diff(logits[i], ref[i]) for i in range(3))
        check(d < ATOL, f"batch of 3 ({what}): row i is clip i alone ({d:.2e})")
        check(r.get_response().parameters["batch_size"].int64_param >= 3,
              f"batch of 3 ({what}): ran in a batch of at least 3")

    # Requested outputs only, in that order.
    r = client.infer(m.name, [clip_input(m, clips[:3])],
                     outputs=outputs("probabilities", m.logits_name), client_timeout=RPC_TIMEOUT)
    ledger.good(3)
    names = [o.name for o in r.get_response().outputs]
    check(names == ["probabilities", m.logits_name],
          f"outputs [probabilities, {m.logits_name}]: in that order (got {names})")
    r = client.infer(m.name, [clip_input(m, clip0)], outputs=outputs("probabilities"),
                     client_timeout=RPC_TIMEOUT)
    ledger.good(1)
    check(r.as_numpy(m.logits_name) is None and r.as_numpy("probabilities").shape == (1, m.classes),
          "outputs [probabilities]: only the probabilities")

    # Parameters as tritonclient sends them: priority (uint64), timeout (int64
    # microseconds); other parameters are ignored.
    for kw in ({"priority": 1}, {"priority": m.levels}, {"timeout": 10_000_000},
               {"priority": 2, "timeout": 20_000_000}, {"parameters": {"note": "x", "n": 3}}):
        r = client.infer(m.name, [clip_input(m, clip0)], client_timeout=RPC_TIMEOUT, **kw)
        ledger.good(1)
        d = max_diff(logits_of(r, m, 1)[0], ref[0])
        check(d < ATOL, f"infer with {kw}: accepted, the same logits")

    # async_infer: answers by callback.
    answers = queue.Queue()
    for i in range(3):
        client.async_infer(m.name, [clip_input(m, clips[i:i + 1])],
                           functools.partial(lambda i, result, error: answers.put((i, result, error)), i),
                           request_id=f"async-{i}", client_timeout=RPC_TIMEOUT)
    got = {}
    for _ in range(3):
        i, result, error = answers.get(timeout=STREAM_TIMEOUT)
        if error is not None:
            raise Failure(f"async_infer {i}: {error}")
        got[i] = logits_of(result, m, 1)[0]
        ledger.good(1)
    d = max(max_diff(got[i], ref[i]) for i in range(3))
    check(sorted(got) == [0, 1, 2] and d < ATOL,
          f"async_infer: three answers by callback, each its clip's logits ({d:.2e})")
    return ref


def test_errors(client, stub, model, clips, ledger):
    m = model
    clip0 = clips[:1]
    name = f"'{m.input_name}'"

    def infer(inputs, **kw):
        return lambda: client.infer(kw.pop("model", m.name), inputs, client_timeout=RPC_TIMEOUT,
                                    **kw)

    expect_error("infer on an unknown model", NOT_FOUND,
                 infer([clip_input(m, clip0)], model=UNKNOWN_MODEL), f"'{UNKNOWN_MODEL}'")
    expect_error("infer on an unknown version", NOT_FOUND,
                 infer([clip_input(m, clip0)], model_version=UNKNOWN_VERSION),
                 f"'{UNKNOWN_VERSION}'", f"'{m.name}'")
    wrong_t = np.zeros([1, m.t + 1, m.h, m.w, m.c], dtype=np.uint8)
    expect_error(f"wrong shape (T = {m.t + 1})", INVALID, infer([clip_input(m, wrong_t)]),
                 name, f"{m.t + 1} x {m.h} x {m.w}")
    ledger.bad()
    rank4 = grpcclient.InferInput(m.input_name, m.f32_shape(1)[1:], "FP32")
    rank4.set_data_from_numpy(to_fp32(clip0)[0])
    expect_error("no batch dimension", INVALID, infer([rank4]), name, "shape")
    ledger.bad()
    as_int = grpcclient.InferInput(m.input_name, m.u8_shape(1), "INT32")
    as_int.set_data_from_numpy(clip0.astype(np.int32))
    expect_error("datatype INT32", INVALID, infer([as_int]), name, "INT32")
    ledger.bad()
    as_half = grpcclient.InferInput(m.input_name, m.f32_shape(1), "FP16")
    as_half.set_data_from_numpy(to_fp32(clip0).astype(np.float16))
    expect_error("datatype FP16", INVALID, infer([as_half]), name, "FP16")
    ledger.bad()
    big = np.zeros(m.u8_shape(m.max_batch_size + 1), dtype=np.uint8)
    expect_error(f"batch of {m.max_batch_size + 1} > max_batch_size", INVALID,
                 infer([clip_input(m, big)]), "max_batch_size", str(m.max_batch_size))
    ledger.bad()
    frames = grpcclient.InferInput("frames", m.u8_shape(1), "UINT8")
    frames.set_data_from_numpy(clip0)
    expect_error("unknown input name", INVALID, infer([frames]), "'frames'", name)
    ledger.bad()
    expect_error("two inputs", INVALID, infer([clip_input(m, clip0), clip_input(m, clip0)]),
                 name, "2")
    ledger.bad()
    expect_error("unknown output", INVALID,
                 infer([clip_input(m, clip0)], outputs=outputs("scores")), "'scores'")
    ledger.bad()
    expect_error("priority 99", INVALID, infer([clip_input(m, clip0)], priority=99),
                 "priority", "99", str(m.levels))
    ledger.bad()
    expect_error("negative timeout", INVALID, infer([clip_input(m, clip0)], timeout=-1),
                 "'timeout'")
    ledger.bad()
    expect_error("timeout over a day", INVALID,
                 infer([clip_input(m, clip0)], timeout=86_400_000_001), "'timeout'")
    ledger.bad()
    # tritonclient sets "priority" and "timeout" itself (and refuses them in
    # `parameters`); a parameter of the wrong type goes through its stub.
    for key, kind, value in (("priority", "string_param", "high"),
                             ("timeout", "double_param", 1e6)):
        req = service_pb2.ModelInferRequest(model_name=m.name)
        req.inputs.add(name=m.input_name, datatype="UINT8", shape=m.u8_shape(1))
        req.raw_input_contents.append(clip0.tobytes())
        setattr(req.parameters[key], kind, value)
        try:
            stub.ModelInfer(req, timeout=RPC_TIMEOUT)
            raise Failure(f"parameter {key} as {kind}: succeeded, want INVALID_ARGUMENT")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and f"'{key}'" in e.details(),
                  f"parameter {key} as {kind}: INVALID_ARGUMENT naming it "
                  f"(got {e.code().name}: {e.details()!r})")
        ledger.bad()
    # 1 us is over before the batcher's window closes, let alone the run.
    expect_error("timeout 1 us", DEADLINE, infer([clip_input(m, clip0)], timeout=1), "deadline")
    ledger.bad()
    # Still serving.
    r = client.infer(m.name, [clip_input(m, clip0)], client_timeout=RPC_TIMEOUT)
    ledger.good(1)
    check(r.as_numpy(m.logits_name).shape == (1, m.classes),
          "after the errors a good request still succeeds")


def test_stream(client, model, clips, ref, ledger):
    m = model
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)),
                        stream_timeout=STREAM_TIMEOUT)
    try:
        sent = [("s0", clips[0:1], {}), ("s1", to_fp32(clips[1:2]), {}),
                ("s2-bad", clips[2:3], {"priority": 99}),
                ("s3", clips[0:3], {"priority": 1}),
                ("s4-bad", clips[0:1], {"model_name": UNKNOWN_MODEL}),
                ("s5", clips[2:3], {"timeout": 10_000_000})]
        for rid, data, kw in sent:
            kw = dict(kw)
            client.async_stream_infer(kw.pop("model_name", m.name), [clip_input(m, data)],
                                      request_id=rid, **kw)
        results, errors = {}, []
        for _ in sent:
            result, error = answers.get(timeout=STREAM_TIMEOUT)
            if error is not None:
                errors.append(error.message())
            else:
                results[result.get_response().id] = result
    finally:
        client.stop_stream()
    check(sorted(results) == ["s0", "s1", "s3", "s5"],
          f"stream: one answer per good request, by id (got {sorted(results)})")
    check(len(errors) == 2 and any("priority" in e and "99" in e for e in errors)
          and any(UNKNOWN_MODEL in e and "NOT_FOUND" in e for e in errors),
          f"stream: the two bad requests answered with their errors, stream open (got {errors})")
    ledger.good(1)
    ledger.good(1)
    ledger.bad()  # priority 99; the unknown model counts nowhere
    ledger.good(3)
    ledger.good(1)
    for rid, row0, idx in (("s0", 0, [0]), ("s1", 0, [1]), ("s3", 0, [0, 1, 2]), ("s5", 0, [2])):
        logits = logits_of(results[rid], m, len(idx))
        d = max(max_diff(logits[k], ref[i]) for k, i in enumerate(idx))
        check(d < ATOL, f"stream {rid}: the logits of clips {idx} ({d:.2e})")


def test_statistics(client, model, other, before, ledger, started_ms):
    m = model
    stats = client.get_inference_statistics(m.name, client_timeout=RPC_TIMEOUT)
    check([(s.name, s.version) for s in stats.model_stats] == [(m.name, "1")],
          f"get_inference_statistics({m.name!r}): one entry, version 1")
    s = stats.model_stats[0]
    i, i0 = s.inference_stats, before.inference_stats
    ok, clips, failed = (i.success.count - i0.success.count,
                         s.inference_count - before.inference_count,
                         i.fail.count - i0.fail.count)
    check((ok, clips, failed) == (ledger.ok, ledger.clips, ledger.failed),
          f"statistics: exactly this test's {ledger.ok} successful requests of "
          f"{ledger.clips} clips and {ledger.failed} failed ones (got {ok}, {clips}, {failed})")
    executions = s.execution_count - before.execution_count
    check(0 < executions <= ledger.ok,
          f"statistics: {executions} executions for {ledger.ok} successful requests "
          "(some batched together)")
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        n = getattr(i, phase).count - getattr(i0, phase).count
        check(n == ledger.ok, f"statistics: {phase} counted once per successful request ({n})")
    check(i.compute_infer.ns > i0.compute_infer.ns and i.success.ns > i0.success.ns
          and i.fail.ns > i0.fail.ns,
          "statistics: success, fail and compute_infer durations grew")
    # Every successful request's time covers its queue, input and infer
    # phases (it is answered during its batch's output phase).
    phases = sum(getattr(i, p).ns - getattr(i0, p).ns
                 for p in ("queue", "compute_input", "compute_infer"))
    check(i.success.ns - i0.success.ns >= phases,
          f"statistics: success time {i.success.ns - i0.success.ns} ns covers the phases "
          f"({phases} ns)")
    sizes = {b.batch_size: b.compute_infer.count for b in s.batch_stats}
    before_sizes = {b.batch_size: b.compute_infer.count for b in before.batch_stats}
    check(sum(sizes.values()) == s.execution_count and sizes.get(3, 0) > before_sizes.get(3, 0)
          and all(1 <= k <= m.max_batch_size for k in sizes)
          and sorted(sizes) == [b.batch_size for b in s.batch_stats],
          f"statistics: batch_stats by batch size, ascending, batch size 3 among them, adding "
          f"up to execution_count {s.execution_count} (got {sizes})")
    for b in s.batch_stats:
        if not (b.compute_input.count == b.compute_infer.count == b.compute_output.count
                and b.compute_infer.ns > 0):
            raise Failure(f"statistics: batch size {b.batch_size}: {b}")
    now_ms = int(time.time() * 1000)
    check(started_ms <= s.last_inference <= now_ms,
          f"statistics: last_inference {s.last_inference} ms within the test "
          f"({started_ms}..{now_ms})")

    js = client.get_inference_statistics(m.name, as_json=True, client_timeout=RPC_TIMEOUT)
    check(int(js["model_stats"][0]["execution_count"]) >= s.execution_count,
          "get_inference_statistics(as_json=True): execution_count")
    everything = client.get_inference_statistics(client_timeout=RPC_TIMEOUT)
    names = [x.name for x in everything.model_stats]
    check(names == sorted(names) and m.name in names and other.name in names,
          f"get_inference_statistics(): every model, in name order (got {names})")
    untouched = [x for x in everything.model_stats if x.name == other.name][0]
    check(untouched.execution_count == 0 and untouched.inference_stats.success.count == 0,
          f"statistics of {other.name}, which nobody used: zero")
    expect_error("get_inference_statistics of an unknown model", NOT_FOUND,
                 lambda: client.get_inference_statistics(UNKNOWN_MODEL,
                                                         client_timeout=RPC_TIMEOUT),
                 UNKNOWN_MODEL)
    expect_error("get_inference_statistics of an unknown version", NOT_FOUND,
                 lambda: client.get_inference_statistics(m.name, UNKNOWN_VERSION,
                                                         client_timeout=RPC_TIMEOUT),
                 f"'{UNKNOWN_VERSION}'")


# ---- the model repository extension ------------------------------------------

NO_SUCH_MODEL = "no_such_model"


def repository_models(repo):
    """The models of the repository as its directories say (read
    independently of the server), in name order."""
    return sorted(n for n in os.listdir(repo)
                  if os.path.isfile(os.path.join(repo, n, "config.pbtxt")))


def index_of(client, headers):
    """The repository index as (name, version, state, reason), in the order
    answered."""
    idx = client.get_model_repository_index(headers=headers, client_timeout=RPC_TIMEOUT)
    return [(m.name, m.version, m.state, m.reason) for m in idx.models]


def index_want(models, loaded):
    """Every model of the repository: the `loaded` ones version 1 READY, the
    others UNAVAILABLE "not loaded" (no version), in name order."""
    return [(n, "1", "READY", "") if n in loaded else (n, "", "UNAVAILABLE", "not loaded")
            for n in models]


def test_repository_closed(client, model):
    """The first server has neither --admin-token-file nor
    --repository-api-open: the three RPCs are refused, token or not."""
    auth = {"authorization": "Bearer " + "c" * 32}
    for what, call in (
            ("get_model_repository_index", lambda h: client.get_model_repository_index(
                headers=h, client_timeout=RPC_TIMEOUT)),
            ("load_model", lambda h: client.load_model(model.name, headers=h,
                                                       client_timeout=RPC_TIMEOUT)),
            ("unload_model", lambda h: client.unload_model(model.name, headers=h,
                                                           client_timeout=RPC_TIMEOUT))):
        for h in (None, auth):
            expect_error(f"{what} on a server without --admin-token-file "
                         f"({'a' if h else 'no'} token)", DENIED, lambda: call(h),
                         "closed", "--admin-token-file")
    check(client.is_model_ready(model.name, client_timeout=RPC_TIMEOUT),
          f"{model.name} still served after the refused unload_model")


def test_repository(client, models, preloaded, model, clips, ref, token):
    """On the explicit-mode server (`preloaded` loaded at start): index,
    load, infer, unload, refusals. `models`: the repository's models; `ref`:
    the first server's logits of each clip (the same files)."""
    m = model
    want = functools.partial(index_want, models)
    auth = {"authorization": f"Bearer {token}"}
    wrong = "w" * len(token)
    clip0 = clips[:1]

    md = client.get_server_metadata(client_timeout=RPC_TIMEOUT)
    check(list(md.extensions) == EXTENSIONS,
          f"explicit mode: get_server_metadata lists the extensions {EXTENSIONS} "
          f"(got {list(md.extensions)})")
    check(client.is_server_ready(client_timeout=RPC_TIMEOUT)
          and client.is_model_ready(preloaded, client_timeout=RPC_TIMEOUT),
          f"explicit mode: server ready, {preloaded} (--load-model) ready")

    got = index_of(client, auth)
    check(got == want({preloaded}),
          f"get_model_repository_index: {want({preloaded})} (got {got})")
    js = client.get_model_repository_index(headers=auth, as_json=True,
                                           client_timeout=RPC_TIMEOUT)
    check([e.get("name") for e in js.get("models", [])] == models
          and js["models"][models.index(m.name)].get("reason") == "not loaded",
          f"get_model_repository_index(as_json=True): the same models (got {js})")

    # Refused without the token, with a wrong one, without the scheme; the
    # refusal never echoes what was sent.
    for what, headers, needle in (
            ("no token", None, "needs the admin token"),
            ("a wrong token", {"authorization": f"Bearer {wrong}"}, "admin token is wrong"),
            ("the token without 'Bearer '", {"authorization": token}, "admin token is wrong")):
        for rpc, call in (
                ("get_model_repository_index", lambda: client.get_model_repository_index(
                    headers=headers, client_timeout=RPC_TIMEOUT)),
                ("load_model", lambda: client.load_model(m.name, headers=headers,
                                                         client_timeout=RPC_TIMEOUT)),
                ("unload_model", lambda: client.unload_model(preloaded, headers=headers,
                                                             client_timeout=RPC_TIMEOUT))):
            try:
                call()
                raise Failure(f"{rpc} with {what}: succeeded, want {DENIED}")
            except InferenceServerException as e:
                msg = e.message() or ""
                check(e.status() == DENIED and needle in msg
                      and wrong not in msg and token not in msg,
                      f"{rpc} with {what}: {DENIED} naming {needle!r}, nothing sent echoed "
                      f"(got {e.status()}: {msg!r})")
    got = index_of(client, auth)
    check(got == want({preloaded}),
          f"after the refused calls nothing changed: {want({preloaded})} (got {got})")

    # A model the repository knows but does not serve: not ready, and
    # inference finds no model.
    check(client.is_model_ready(m.name, client_timeout=RPC_TIMEOUT) is False,
          f"is_model_ready({m.name!r}) before load_model: False")
    expect_error(f"infer on {m.name} before load_model", NOT_FOUND,
                 lambda: client.infer(m.name, [clip_input(m, clip0)],
                                      client_timeout=RPC_TIMEOUT), f"'{m.name}'")

    expect_error(f"load_model({NO_SUCH_MODEL!r})", NOT_FOUND,
                 lambda: client.load_model(NO_SUCH_MODEL, headers=auth,
                                           client_timeout=RPC_TIMEOUT), f"'{NO_SUCH_MODEL}'")
    expect_error(f"is_model_ready({NO_SUCH_MODEL!r})", NOT_FOUND,
                 lambda: client.is_model_ready(NO_SUCH_MODEL, client_timeout=RPC_TIMEOUT),
                 NO_SUCH_MODEL)
    got = index_of(client, auth)
    check(got == want({preloaded}),
          f"after load_model({NO_SUCH_MODEL!r}) the index is as before (got {got})")

    # load_model answers once the model is live.
    client.load_model(m.name, headers=auth, client_timeout=RPC_TIMEOUT)
    check(client.is_model_ready(m.name, client_timeout=RPC_TIMEOUT) is True,
          f"load_model({m.name!r}) answered; is_model_ready: True")
    got = index_of(client, auth)
    check(got == want({preloaded, m.name}),
          f"get_model_repository_index after load_model: {want({preloaded, m.name})} "
          f"(got {got})")
    r = client.infer(m.name, [clip_input(m, clips[:3])], client_timeout=RPC_TIMEOUT)
    logits = logits_of(r, m, 3)
    d = max(max_diff(logits[i], ref[i]) for i in range(3))
    check(r.get_response().model_version == "1" and d < ATOL,
          f"infer on the loaded {m.name}: version 1, each clip's logits as the first "
          f"server gave them ({d:.2e})")

    # unload_model answers at once; the model takes no new request.
    client.unload_model(m.name, headers=auth, client_timeout=RPC_TIMEOUT)
    check(client.is_model_ready(m.name, client_timeout=RPC_TIMEOUT) is False,
          f"unload_model({m.name!r}) answered; is_model_ready: False")
    expect_error(f"infer on {m.name} after unload_model", NOT_FOUND,
                 lambda: client.infer(m.name, [clip_input(m, clip0)],
                                      client_timeout=RPC_TIMEOUT), f"'{m.name}'")
    # Version 1 is UNLOADING until the requests it took are answered (none
    # are left), then the model is "not loaded" again.
    unloading = want({preloaded, m.name})
    unloading[models.index(m.name)] = (m.name, "1", "UNLOADING", "")
    seen = []

    def settled():
        got = index_of(client, auth)
        if got != want({preloaded}) and got != unloading:
            raise Failure(f"index after unload_model: {want({preloaded})} or, "
                          f"briefly, {unloading} (got {got})")
        seen.append(got)
        return got == want({preloaded})

    live_util.wait_for(f"{m.name} to be freed after unload_model", settled, 10, interval=0.05)
    check(seen[-1] == want({preloaded}),
          f"get_model_repository_index after unload_model: {want({preloaded})} "
          f"(after {len(seen) - 1} answer(s) with version 1 UNLOADING)")
    check(client.is_server_ready(client_timeout=RPC_TIMEOUT)
          and client.is_model_ready(preloaded, client_timeout=RPC_TIMEOUT),
          f"after unload_model({m.name!r}): server still ready, {preloaded} still ready")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the clipserve binary")
    ap.add_argument("--bench-repo", required=True, help="the clipserve-bench-repo binary")
    ap.add_argument("--model", default="micro", help="benchmark model to infer with")
    args = ap.parse_args()
    install_signal_handlers()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clipserve-tritonclient-test-")
    children = Children()
    client = channel = None
    ok = False
    try:
        repo = os.path.join(tmp, "models")
        run_tool([args.bench_repo, repo], "clipserve-bench-repo")
        model = Model(repo, args.model)
        other = Model(repo, "tiny-b1")
        proc, port, _ = live_util.start_clipserve(children, args.server, repo,
                                                  os.path.join(tmp, "clipserve.log"),
                                                  timeout=START_TIMEOUT)
        url = f"127.0.0.1:{port}"
        client = grpcclient.InferenceServerClient(url)
        channel = grpc.insecure_channel(url)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        started_ms = int(time.time() * 1000)
        rng = np.random.default_rng(20250611)
        clips = rng.integers(0, 256, size=model.u8_shape(3), dtype=np.uint8)
        ledger = Ledger()

        test_health_and_metadata(client, model, other)
        before = client.get_inference_statistics(model.name,
                                                 client_timeout=RPC_TIMEOUT).model_stats[0]
        ref = test_infer(client, stub, model, clips, ledger)
        test_errors(client, stub, model, clips, ledger)
        test_stream(client, model, clips, ref, ledger)
        test_statistics(client, model, other, before, ledger, started_ms)
        test_repository_closed(client, model)

        client.close()
        client = None
        channel.close()
        channel = None
        rc = children.stop(proc, timeout=STOP_TIMEOUT)
        check(rc == 0, f"clipserve drains and exits 0 on SIGTERM (got {rc})")

        # The repository extension, on a server in explicit mode with an
        # admin token (a trailing newline, as `echo` writes: stripped).
        token = secrets.token_hex(16)
        token_file = os.path.join(tmp, "admin.token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(token_file, 0o600)
        models = repository_models(repo)
        preloaded = other.name if other.name != model.name else models[0]
        check(model.name in models and preloaded in models and preloaded != model.name
              and len(models) >= 3,
              f"the repository's models: {models}; {preloaded} loaded at start, "
              f"{model.name} loaded by the test")
        proc, port, _ = live_util.start_clipserve(
            children, args.server, repo, os.path.join(tmp, "clipserve-explicit.log"),
            name="clipserve-explicit", timeout=START_TIMEOUT,
            extra=["--model-control-mode", "explicit", "--load-model", preloaded,
                   "--admin-token-file", token_file])
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        test_repository(client, models, preloaded, model, clips, ref, token)
        client.close()
        client = None
        rc = children.stop(proc, timeout=STOP_TIMEOUT)
        check(rc == 0, f"clipserve (explicit mode) drains and exits 0 on SIGTERM (got {rc})")
        ok = True
        log(f"PASS: {live_util.CHECKS[0]} checks in {time.monotonic() - started:.1f} s")
        return 0
    except Failure as e:
        log(f"FAIL: {e}")
        return 1
    except InferenceServerException as e:
        log(f"FAIL: unexpected error {e.status()}: {e.message()}")
        return 1
    finally:
        if client is not None:
            client.close()
        if channel is not None:
            channel.close()
        live_util.finish(children, tmp, failed=not ok, keep=False)


if __name__ == "__main__":
    sys.exit(main())
