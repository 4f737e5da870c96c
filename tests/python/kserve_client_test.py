#!/usr/bin/python3
"""Cross-language proof of the Open Inference Protocol (KServe v2 / Triton's
gRPC protocol): a Python client, generated at test time from the project's
own proto/inference/grpc_service.proto, against the real clipserve binary.

  kserve_client_test.py --server CLIPSERVE --bench-repo CLIPSERVE_BENCH_REPO
      --source-dir DIR [--model micro]

1. Compiles proto/inference/grpc_service.proto (with the
   model_config.proto it imports) and proto/grpc/health/v1/health.proto with `python3 -m grpc_tools.protoc` into
   a temporary directory and imports the generated modules.
2. Writes the benchmark model repository (clipserve-bench-repo) and starts
   clipserve on 127.0.0.1 with --grpc-port 0 --metrics-port 0 (it logs the
   port it got).
3. Calls every RPC of inference.GRPCInferenceService (Triton's ModelConfig
   and ModelStatistics extensions included) on the "micro" model
   (4 x 16 x 16 clips, max_batch_size 8, 400 classes: cheap on a CPU) plus
   grpc.health.v1.Health/Check, checking the answers against the model's
   config.pbtxt and against each other: the same clip sent as raw UINT8,
   raw FP32, typed UINT8 and typed FP32 gives the same logits; row i of a
   batch of 3 is clip i sent alone; probabilities are the logits' softmax;
   the outputs come in the form (raw or typed) and order asked. Every error
   case asserts the exact gRPC status code and that the message names the
   problem, and the server still answers a good request afterwards.
4. SIGTERM: the server must drain and exit 0.

The protobuf runtime: Debian's python3-grpc-tools bundles libprotoc 3.5.1,
whose generated *_pb2.py builds descriptors directly
(_descriptor.Descriptor(...), without the create_key of protoc >= 3.12).
Debian's python3-protobuf (4.21) accepts that from its C++ backend and its
pure-Python one, but the upb backend (the default of protobuf >= 4.21 from
PyPI) refuses it with "Descriptors cannot be created directly". So this test
pins PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python for its own process,
before anything imports google.protobuf: the old generated code then loads
whichever backends the installed runtime was built with. The pure-Python
backend is slower, which does not matter for the micro model's small
tensors.

health.proto's package is grpc.health.v1, so its generated modules would be
grpc/health/v1/health_pb2*.py, shadowed by (or shadowing) the grpcio package
`grpc`; the test compiles a copy of it under a neutral path instead (the
wire names, grpc.health.v1.Health/Check, are the proto's package and do not
change).

Everything it starts is stopped at the end, also on failure or a signal (the
server also gets SIGKILL should this script die). Loopback only; every wait
and every RPC is bounded. Exit 0: pass, 1: fail. Nothing is skipped.
"""
import os

# Before any import of google.protobuf (grpc does not import it): see above.
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"

import argparse  # noqa: E402
import importlib  # noqa: E402
import queue  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402

sys.dont_write_bytecode = True
# The process helpers the live deploy tests share: children that die with the
# test, the server started on ports 0 and its ports read from its log.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
import live_util  # noqa: E402
from live_util import Children, Failure, check, install_signal_handlers, log  # noqa: E402
# The model as its config.pbtxt says, and the numerics to compare answers
# with (shared with tritonclient_test.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kserve_model import (ATOL, RPC_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT,  # noqa: E402
                          STREAM_TIMEOUT, UNKNOWN_MODEL, UNKNOWN_VERSION, Model,
                          max_diff, run_tool, softmax, to_fp32)



# ---- processes --------------------------------------------------------------

# ---- generated code ---------------------------------------------------------

def compile_protos(source_dir, out_dir):
    """Runs grpc_tools.protoc on the project's protos; returns the modules
    (pb2, pb2_grpc, health_pb2, health_pb2_grpc)."""
    proto_root = os.path.join(source_dir, "proto")
    inference_protos = [os.path.join(proto_root, "inference", f)
                        for f in ("grpc_service.proto", "model_config.proto")]
    health_proto = os.path.join(proto_root, "grpc", "health", "v1", "health.proto")
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen)
    run_tool([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
              f"--python_out={gen}", f"--grpc_python_out={gen}"] + inference_protos,
             "grpc_tools.protoc (inference/grpc_service.proto, inference/model_config.proto)")
    # A neutral path for health.proto: see the module docstring.
    health_src = os.path.join(out_dir, "health_src")
    os.makedirs(health_src)
    shutil.copyfile(health_proto, os.path.join(health_src, "clipserve_test_health.proto"))
    run_tool([sys.executable, "-m", "grpc_tools.protoc", f"-I{health_src}",
              f"--python_out={gen}", f"--grpc_python_out={gen}",
              os.path.join(health_src, "clipserve_test_health.proto")],
             "grpc_tools.protoc (grpc/health/v1/health.proto)")
    sys.path.insert(0, gen)
    pb2 = importlib.import_module("inference.grpc_service_pb2")
    pb2_grpc = importlib.import_module("inference.grpc_service_pb2_grpc")
    health_pb2 = importlib.import_module("clipserve_test_health_pb2")
    health_pb2_grpc = importlib.import_module("clipserve_test_health_pb2_grpc")
    from google.protobuf.internal import api_implementation
    log(f"generated code imported; protobuf backend: {api_implementation.Type()}")
    return pb2, pb2_grpc, health_pb2, health_pb2_grpc


# ---- the client side --------------------------------------------------------

class Client:
    def __init__(self, pb2, pb2_grpc, channel, model):
        self.pb2 = pb2
        self.stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        self.model = model

    def request(self, data, *, raw=True, datatype=None, shape=None, model=None, version="",
                rid="", outputs=(), params=None, name=None):
        """A ModelInferRequest carrying `data` (a numpy array, uint8 or float32)."""
        pb2 = self.pb2
        if datatype is None:
            datatype = "UINT8" if data.dtype == np.uint8 else "FP32"
        r = pb2.ModelInferRequest(model_name=self.model.name if model is None else model,
                                  model_version=version, id=rid)
        tensor = r.inputs.add(name=self.model.input_name if name is None else name,
                              datatype=datatype,
                              shape=list(data.shape) if shape is None else shape)
        if raw:
            r.raw_input_contents.append(data.astype(data.dtype.newbyteorder("<")).tobytes())
        elif data.dtype == np.uint8:
            tensor.contents.uint_contents.extend(int(v) for v in data.reshape(-1))
        else:
            tensor.contents.fp32_contents.extend(data.reshape(-1).tolist())
        for o in outputs:
            r.outputs.add(name=o)
        for key, (kind, value) in (params or {}).items():
            setattr(r.parameters[key], kind, value)
        return r

    def infer(self, request):
        return self.stub.ModelInfer(request, timeout=RPC_TIMEOUT)

    def expect_error(self, what, code, call, *needles):
        """`call()` must fail with `code` and a message containing each needle."""
        try:
            call()
        except grpc.RpcError as e:
            got, msg = e.code(), e.details() or ""
            naming = f" naming {', '.join(repr(n) for n in needles)}" if needles else ""
            check(got == code and all(n in msg for n in needles),
                  f"{what}: {code.name}{naming} (got {got.name}: {msg!r})")
            return msg
        raise Failure(f"{what}: succeeded, want {code.name}")

    def expect_infer_error(self, what, code, request, *needles):
        return self.expect_error(what, code, lambda: self.infer(request), *needles)


def outputs_of(response, raw):
    """{name: np.float32 array} of a ModelInferResponse, checking that the
    outputs came in the form asked (raw_output_contents or typed)."""
    out = {}
    if raw:
        check(len(response.raw_output_contents) == len(response.outputs),
              f"id {response.id!r}: raw request, raw answer: one raw_output_contents entry per "
              f"output ({len(response.raw_output_contents)} for {len(response.outputs)})")
    else:
        check(len(response.raw_output_contents) == 0,
              f"id {response.id!r}: typed request, typed answer: no raw_output_contents "
              f"(got {len(response.raw_output_contents)})")
    for i, t in enumerate(response.outputs):
        shape = list(t.shape)
        n = int(np.prod(shape)) if shape else 0
        if t.datatype != "FP32" or len(shape) != 2:
            raise Failure(f"output {t.name!r}: want FP32 [B, classes], got {t.datatype} {shape}")
        if raw:
            if len(t.contents.fp32_contents) != 0:
                raise Failure(f"output {t.name!r}: raw answer also sets contents")
            b = response.raw_output_contents[i]
            if len(b) != 4 * n:
                raise Failure(f"output {t.name!r}: {len(b)} raw bytes for shape {shape}")
            a = np.frombuffer(b, dtype="<f4").reshape(shape)
        else:
            v = t.contents.fp32_contents
            if len(v) != n:
                raise Failure(f"output {t.name!r}: {len(v)} fp32_contents for shape {shape}")
            a = np.array(v, dtype=np.float32).reshape(shape)
        if not np.all(np.isfinite(a)):
            raise Failure(f"output {t.name!r}: not all finite")
        out[t.name] = a
    return out


def check_params(response, what, model, min_batch=1):
    p = response.parameters
    for key in ("queue_us", "compute_us", "batch_size"):
        if key not in p or p[key].WhichOneof("parameter_choice") != "int64_param":
            raise Failure(f"{what}: response parameter {key} missing or not int64: {p}")
    q, c, b = p["queue_us"].int64_param, p["compute_us"].int64_param, p["batch_size"].int64_param
    check(0 <= q < 30_000_000 and 0 < c < 30_000_000 and min_batch <= b <= model.max_batch_size,
          f"{what}: queue_us {q}, compute_us {c}, batch_size {b} (int64, sane)")


# ---- the test ---------------------------------------------------------------

def test_health_and_metadata(c, health_pb2, health_stub, model, other):
    pb2, stub = c.pb2, c.stub
    check(stub.ServerLive(pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live, "ServerLive: live")
    check(stub.ServerReady(pb2.ServerReadyRequest(), timeout=RPC_TIMEOUT).ready,
          "ServerReady: ready")
    for version in ("", "1"):
        r = stub.ModelReady(pb2.ModelReadyRequest(name=model.name, version=version),
                            timeout=RPC_TIMEOUT)
        check(r.ready, f"ModelReady {model.name} version {version!r}: ready")
    c.expect_error("ModelReady of an unknown model", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelReady(pb2.ModelReadyRequest(name=UNKNOWN_MODEL),
                                           timeout=RPC_TIMEOUT), UNKNOWN_MODEL)
    c.expect_error("ModelReady of an unknown version", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelReady(pb2.ModelReadyRequest(name=model.name,
                                                                 version=UNKNOWN_VERSION),
                                           timeout=RPC_TIMEOUT), f"'{UNKNOWN_VERSION}'")

    r = stub.ServerMetadata(pb2.ServerMetadataRequest(), timeout=RPC_TIMEOUT)
    check(r.name == "clipserve" and r.version != ""
          and list(r.extensions) == ["model_configuration", "statistics", "model_repository"],
          f"ServerMetadata: name 'clipserve', a version, extensions model_configuration, "
          f"statistics and model_repository (got {r.name!r}, {r.version!r}, {list(r.extensions)})")

    for m in (model, other):
        r = stub.ModelMetadata(pb2.ModelMetadataRequest(name=m.name), timeout=RPC_TIMEOUT)
        inputs = [(t.name, t.datatype, list(t.shape)) for t in r.inputs]
        outputs = [(t.name, t.datatype, list(t.shape)) for t in r.outputs]
        # The declared input once (names are unique); UINT8 frames under the
        # same name are accepted too (test_infer), unlisted.
        want_in = [(m.input_name, "FP32", [-1] + m.f32_shape(1)[1:])]
        want_out = [(m.logits_name, "FP32", [-1, m.classes]),
                    ("probabilities", "FP32", [-1, m.classes])]
        check(r.name == m.name and list(r.versions) == ["1"] and r.platform == m.backend,
              f"ModelMetadata {m.name}: name, versions ['1'], platform {m.backend!r} "
              f"(got {r.name!r}, {list(r.versions)}, {r.platform!r})")
        check(inputs == want_in, f"ModelMetadata {m.name}: inputs {want_in} (got {inputs})")
        check(outputs == want_out, f"ModelMetadata {m.name}: outputs {want_out} (got {outputs})")
    r = stub.ModelMetadata(pb2.ModelMetadataRequest(name=model.name, version="1"),
                           timeout=RPC_TIMEOUT)
    check(r.name == model.name, "ModelMetadata with version '1'")
    c.expect_error("ModelMetadata of an unknown model", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelMetadata(pb2.ModelMetadataRequest(name=UNKNOWN_MODEL),
                                              timeout=RPC_TIMEOUT), UNKNOWN_MODEL)
    c.expect_error("ModelMetadata of an unknown version", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelMetadata(pb2.ModelMetadataRequest(name=model.name,
                                                                       version=UNKNOWN_VERSION),
                                              timeout=RPC_TIMEOUT), f"'{UNKNOWN_VERSION}'")

    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", model.name):
        r = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
        check(r.status == serving, f"Health/Check {service!r}: SERVING (got {r.status})")
    c.expect_error("Health/Check of an unknown service", grpc.StatusCode.NOT_FOUND,
                   lambda: health_stub.Check(health_pb2.HealthCheckRequest(service=UNKNOWN_MODEL),
                                             timeout=RPC_TIMEOUT))


def test_config_and_statistics(c, model, other, before):
    """Triton's ModelConfig and ModelStatistics extensions; `before` is the
    model's statistics before test_infer and test_errors ran."""
    pb2, stub = c.pb2, c.stub
    for m in (model, other):
        cfg = stub.ModelConfig(pb2.ModelConfigRequest(name=m.name), timeout=RPC_TIMEOUT).config
        got = (cfg.name, cfg.backend, cfg.max_batch_size,
               [(t.name, t.data_type, list(t.dims)) for t in cfg.input],
               [(t.name, t.data_type, list(t.dims)) for t in cfg.output])
        fp32 = importlib.import_module("inference.model_config_pb2").TYPE_FP32
        want = (m.name, m.backend, m.max_batch_size,
                [(m.input_name, fp32, m.f32_shape(1)[1:])],
                [(m.logits_name, fp32, [m.classes]), ("probabilities", fp32, [m.classes])])
        check(got == want, f"ModelConfig {m.name}: {want} (got {got})")
        check(cfg.dynamic_batching.priority_levels == m.levels,
              f"ModelConfig {m.name}: dynamic_batching.priority_levels {m.levels}")
    c.expect_error("ModelConfig of an unknown model", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelConfig(pb2.ModelConfigRequest(name=UNKNOWN_MODEL),
                                            timeout=RPC_TIMEOUT), UNKNOWN_MODEL)

    r = stub.ModelStatistics(pb2.ModelStatisticsRequest(name=model.name), timeout=RPC_TIMEOUT)
    check([(s.name, s.version) for s in r.model_stats] == [(model.name, "1")],
          f"ModelStatistics {model.name}: one entry, version 1")
    after = r.model_stats[0]
    i, i0 = after.inference_stats, before.inference_stats
    # test_infer sent 3 + 3 + 2 + 2 batches of 3 and 1-clip requests;
    # test_errors refused ~30 and answered one more.
    check(after.execution_count > before.execution_count
          and after.inference_count >= before.inference_count + 3 * 4
          and i.success.count > i0.success.count and i.fail.count >= i0.fail.count + 20,
          f"ModelStatistics {model.name}: executions, clips, successes and failures grew "
          f"({before.execution_count}->{after.execution_count}, "
          f"{before.inference_count}->{after.inference_count}, "
          f"{i0.success.count}->{i.success.count}, {i0.fail.count}->{i.fail.count})")
    sizes = {b.batch_size: b.compute_infer.count for b in after.batch_stats}
    check(sizes.get(3, 0) >= 1 and sum(sizes.values()) == after.execution_count,
          f"ModelStatistics {model.name}: batch_stats has batch size 3 and adds up to "
          f"execution_count (got {sizes})")
    everything = stub.ModelStatistics(pb2.ModelStatisticsRequest(), timeout=RPC_TIMEOUT)
    names = [s.name for s in everything.model_stats]
    check(names == sorted(names) and model.name in names and other.name in names,
          f"ModelStatistics without a name: every model, in name order (got {names})")
    c.expect_error("ModelStatistics of an unknown model", grpc.StatusCode.NOT_FOUND,
                   lambda: stub.ModelStatistics(pb2.ModelStatisticsRequest(name=UNKNOWN_MODEL),
                                                timeout=RPC_TIMEOUT), UNKNOWN_MODEL)


def test_infer(c, clips):
    """The four input forms, batching order, output selection, parameters.
    Returns the reference logits of each clip (raw UINT8, alone)."""
    m = c.model
    names = [m.logits_name, "probabilities"]

    # Each clip alone, raw UINT8: the references.
    ref = []
    for i in range(len(clips)):
        rid = f"raw-u8-{i}"
        r = c.infer(c.request(clips[i:i + 1], raw=True, rid=rid))
        check(r.id == rid and r.model_name == m.name and r.model_version == "1",
              f"raw UINT8 clip {i}: id, model name and version echoed "
              f"(got {r.id!r}, {r.model_name!r}, {r.model_version!r})")
        check([t.name for t in r.outputs] == names,
              f"raw UINT8 clip {i}: outputs {names} by default (got {[t.name for t in r.outputs]})")
        out = outputs_of(r, raw=True)
        check(out[m.logits_name].shape == (1, m.classes),
              f"raw UINT8 clip {i}: logits [1, {m.classes}] (got {out[m.logits_name].shape})")
        d = max_diff(out["probabilities"], softmax(out[m.logits_name]))
        check(d < 1e-5, f"raw UINT8 clip {i}: probabilities are softmax(logits) (max diff {d:.2e})")
        check_params(r, f"raw UINT8 clip {i}", m)
        ref.append(out[m.logits_name][0])
    spread = min(max_diff(ref[i], ref[j]) for i in range(len(ref)) for j in range(i))
    check(spread > 100 * ATOL,
          f"different clips give different logits (min pairwise max diff {spread:.3g}): "
          "the order checks below mean something")

    # The same clip in the other three forms.
    clip0 = clips[:1]
    forms = [("raw FP32", to_fp32(clip0), True), ("typed UINT8", clip0, False),
             ("typed FP32", to_fp32(clip0), False)]
    for what, data, raw in forms:
        rid = what.replace(" ", "-")
        r = c.infer(c.request(data, raw=raw, rid=rid))
        check(r.id == rid, f"{what}: id {rid!r} echoed (got {r.id!r})")
        out = outputs_of(r, raw=raw)
        d = max_diff(out[m.logits_name][0], ref[0])
        check(d < ATOL, f"{what}: the same logits as raw UINT8 (max diff {d:.2e})")
        check_params(r, what, m)

    # A batch of 3: rows come back in order.
    for what, data, raw in [("raw UINT8", clips[:3], True), ("typed FP32", to_fp32(clips[:3]), False)]:
        r = c.infer(c.request(data, raw=raw, rid=f"batch3-{what}"))
        out = outputs_of(r, raw=raw)
        logits = out[m.logits_name]
        check(logits.shape == (3, m.classes) and out["probabilities"].shape == (3, m.classes),
              f"batch of 3 ({what}): logits and probabilities [3, {m.classes}]")
        for i in range(3):
            d = max_diff(logits[i], ref[i])
            check(d < ATOL, f"batch of 3 ({what}): row {i} is clip {i} alone (max diff {d:.2e})")
        check_params(r, f"batch of 3 ({what})", m, min_batch=3)

    # Output selection and order.
    batch = clips[:3]
    for raw in (True, False):
        form = "raw" if raw else "typed"
        r = c.infer(c.request(batch, raw=raw, outputs=["probabilities"], rid=f"probs-{form}"))
        check([t.name for t in r.outputs] == ["probabilities"],
              f"outputs [probabilities] ({form}): only probabilities "
              f"(got {[t.name for t in r.outputs]})")
        p = outputs_of(r, raw=raw)["probabilities"]
        sums = p.astype(np.float64).sum(axis=1)
        check(np.all(np.abs(sums - 1) < 1e-4) and np.all(p >= 0),
              f"outputs [probabilities] ({form}): rows sum to 1 (got {sums})")
        want = [int(np.argmax(ref[i])) for i in range(3)]
        got = [int(i) for i in np.argmax(p, axis=1)]
        check(got == want, f"outputs [probabilities] ({form}): argmax matches the logits' "
                           f"({got} vs {want})")
    r = c.infer(c.request(batch, raw=True, outputs=["probabilities", m.logits_name],
                          rid="probs-logits"))
    check([t.name for t in r.outputs] == ["probabilities", m.logits_name],
          f"outputs [probabilities, {m.logits_name}]: in that order "
          f"(got {[t.name for t in r.outputs]})")
    out = outputs_of(r, raw=True)
    d = max(max_diff(out[m.logits_name][i], ref[i]) for i in range(3))
    check(d < ATOL and max_diff(out["probabilities"], softmax(out[m.logits_name])) < 1e-5,
          f"outputs [probabilities, {m.logits_name}]: raw entries in that order too "
          f"(logits max diff {d:.2e})")
    r = c.infer(c.request(clip0, raw=False, outputs=[m.logits_name], rid="logits-typed"))
    check([t.name for t in r.outputs] == [m.logits_name],
          f"outputs [{m.logits_name}] (typed): only the logits")

    # Request parameters priority and timeout.
    levels = m.levels
    for params in ({"priority": ("uint64_param", 1)},
                   {"priority": ("int64_param", levels)},
                   {"priority": ("uint64_param", 0)},
                   {"timeout": ("int64_param", 10_000_000)},
                   {"timeout": ("uint64_param", 10_000_000)},
                   {"priority": ("uint64_param", 2), "timeout": ("int64_param", 20_000_000)}):
        r = c.infer(c.request(clip0, params=params, rid="params"))
        d = max_diff(outputs_of(r, raw=True)[m.logits_name][0], ref[0])
        check(r.id == "params" and d < ATOL, f"parameters {params}: accepted, same logits")
    # The timeout is honoured, not just accepted: 1 us is over before the
    # batcher's window (max_queue_delay) closes, let alone the computation.
    c.expect_infer_error("timeout 1 us", grpc.StatusCode.DEADLINE_EXCEEDED,
                         c.request(clip0, params={"timeout": ("int64_param", 1)}), "deadline")
    return ref


def test_errors(c, clips, ref):
    """Each bad request: the exact status code, a message naming the problem."""
    m = c.model
    inv, nf = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    clip0 = clips[:1]
    name = f"'{m.input_name}'"
    c.expect_infer_error("unknown model", nf, c.request(clip0, model=UNKNOWN_MODEL),
                         f"'{UNKNOWN_MODEL}'")
    c.expect_infer_error("unknown version", nf, c.request(clip0, version=UNKNOWN_VERSION),
                         f"'{UNKNOWN_VERSION}'", f"'{m.name}'")
    c.expect_infer_error("datatype INT32", inv,
                         c.request(clip0.astype(np.int32), datatype="INT32"), name, "INT32")
    c.expect_infer_error("datatype FP16 (raw)", inv,
                         c.request(to_fp32(clip0).astype(np.float16), datatype="FP16"),
                         name, "FP16")
    c.expect_infer_error("rank 4 (no batch dimension)", inv,
                         c.request(clip0[0], shape=m.u8_shape(1)[1:]), name,
                         str(m.u8_shape(1)[1:]).replace("'", ""))
    bad_t = np.zeros([1, m.t + 1, m.h, m.w, m.c], dtype=np.uint8)
    c.expect_infer_error(f"T = {m.t + 1}", inv, c.request(bad_t), name,
                         f"{m.t + 1} x {m.h} x {m.w}", f"{m.t} x {m.h} x {m.w}")
    c.expect_infer_error("FP32 sent in the UINT8 layout", inv,
                         c.request(clip0.astype(np.float32), datatype="FP32"), name, "channels")
    c.expect_infer_error("a zero dimension", inv,
                         c.request(np.zeros([0] + m.u8_shape(1)[1:], np.uint8)), name)
    want_bytes = int(np.prod(m.u8_shape(1)))
    short = c.request(clip0)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-1]
    c.expect_infer_error("raw byte count one short", inv, short, name, "raw_input_contents",
                         f"{want_bytes - 1} bytes", str(want_bytes))
    f32 = c.request(to_fp32(clip0))
    f32.raw_input_contents[0] += b"\0\0\0\0"
    c.expect_infer_error("raw FP32 byte count one float over", inv, f32, name,
                         f"{4 * want_bytes + 4} bytes", str(4 * want_bytes))
    typed = c.request(clip0, raw=False)
    del typed.inputs[0].contents.uint_contents[-1]
    c.expect_infer_error("typed UINT8 one value short", inv, typed, name, "uint_contents",
                         str(want_bytes - 1))
    typed = c.request(to_fp32(clip0), raw=False)
    typed.inputs[0].contents.fp32_contents.append(0.0)
    c.expect_infer_error("typed FP32 one value over", inv, typed, name, "fp32_contents",
                         str(want_bytes + 1))
    typed = c.request(clip0, raw=False)
    typed.inputs[0].contents.uint_contents[5] = 256
    c.expect_infer_error("typed UINT8 value 256", inv, typed, name, "256", "255")
    typed = c.request(clip0, raw=False)
    typed.inputs[0].contents.ClearField("uint_contents")
    typed.inputs[0].contents.fp32_contents.extend([0.0] * want_bytes)
    c.expect_infer_error("UINT8 with fp32_contents", inv, typed, name, "uint_contents")
    c.expect_infer_error("wrong input name", inv, c.request(clip0, name="frames"),
                         "'frames'", name)
    two = c.request(clip0)
    two.inputs.add(name=m.input_name, datatype="UINT8", shape=m.u8_shape(1))
    two.raw_input_contents.append(two.raw_input_contents[0])
    c.expect_infer_error("two inputs", inv, two, name, "2")
    none = c.pb2.ModelInferRequest(model_name=m.name)
    c.expect_infer_error("no input", inv, none, name, "0")
    mixed = c.request(clip0)
    mixed.inputs[0].contents.uint_contents.extend(int(v) for v in clip0.reshape(-1))
    c.expect_infer_error("raw and typed mixed", inv, mixed, name, "raw_input_contents",
                         "contents")
    extra = c.request(clip0)
    extra.raw_input_contents.append(b"")
    c.expect_infer_error("two raw_input_contents for one input", inv, extra,
                         "raw_input_contents", "2")
    c.expect_infer_error("unknown output", inv, c.request(clip0, outputs=["scores"]),
                         "'scores'", f"'{m.logits_name}'", "'probabilities'")
    c.expect_infer_error("output asked twice", inv,
                         c.request(clip0, outputs=["probabilities", "probabilities"]),
                         "'probabilities'", "twice")
    big = np.zeros(m.u8_shape(m.max_batch_size + 1), dtype=np.uint8)
    c.expect_infer_error(f"B = {m.max_batch_size + 1} > max_batch_size", inv, c.request(big),
                         name, str(m.max_batch_size + 1), "max_batch_size",
                         str(m.max_batch_size))
    c.expect_infer_error("priority 99", inv,
                         c.request(clip0, params={"priority": ("uint64_param", 99)}),
                         "priority", "99", str(m.levels))
    c.expect_infer_error(f"priority {m.levels + 1}", inv,
                         c.request(clip0, params={"priority": ("int64_param", m.levels + 1)}),
                         "priority", str(m.levels + 1))
    c.expect_infer_error("priority -1", inv,
                         c.request(clip0, params={"priority": ("int64_param", -1)}),
                         "'priority'")
    c.expect_infer_error("priority as a string", inv,
                         c.request(clip0, params={"priority": ("string_param", "1")}),
                         "'priority'")
    c.expect_infer_error("timeout as a string", inv,
                         c.request(clip0, params={"timeout": ("string_param", "5s")}),
                         "'timeout'")
    c.expect_infer_error("timeout as a double", inv,
                         c.request(clip0, params={"timeout": ("double_param", 1e6)}),
                         "'timeout'")
    c.expect_infer_error("negative timeout", inv,
                         c.request(clip0, params={"timeout": ("int64_param", -1)}),
                         "'timeout'")
    c.expect_infer_error("timeout over a day", inv,
                         c.request(clip0, params={"timeout": ("uint64_param", 86_400_000_001)}),
                         "'timeout'", "86400000001")

    # Still serving.
    r = c.infer(c.request(clip0, rid="after-errors"))
    d = max_diff(outputs_of(r, raw=True)[m.logits_name][0], ref[0])
    check(r.id == "after-errors" and d < ATOL,
          f"after the errors a good request still succeeds, same logits (max diff {d:.2e})")


class Stream:
    """ModelStreamInfer driven step by step: send(), then read answers."""

    _END = object()

    def __init__(self, c):
        self.q = queue.Queue()
        self.call = c.stub.ModelStreamInfer(self._requests(), timeout=STREAM_TIMEOUT)

    def _requests(self):
        while True:
            r = self.q.get()
            if r is self._END:
                return
            yield r

    def send(self, *requests):
        for r in requests:
            self.q.put(r)

    def read(self, n):
        """The next n answers, by id (they come in completion order)."""
        got = {}
        for _ in range(n):
            try:
                a = next(self.call)
            except StopIteration:
                raise Failure(f"ModelStreamInfer ended after {len(got)} of {n} answers")
            rid = a.infer_response.id
            if rid in got:
                raise Failure(f"ModelStreamInfer: two answers for id {rid!r}")
            got[rid] = a
        return got

    def close(self):
        self.q.put(self._END)


def test_stream(c, clips, ref):
    m = c.model
    name = f"'{m.input_name}'"

    def good(a, rid, raw, i):
        check(a.error_message == "", f"stream {rid}: no error_message (got {a.error_message!r})")
        r = a.infer_response
        check(r.id == rid and r.model_name == m.name,
              f"stream {rid}: infer_response id and model echoed ({r.id!r}, {r.model_name!r})")
        out = outputs_of(r, raw=raw)
        d = max_diff(out[m.logits_name][0], ref[i])
        check(d < ATOL, f"stream {rid}: the logits of clip {i} (max diff {d:.2e})")
        check_params(r, f"stream {rid}", m)

    def bad(a, rid, *needles):
        msg = a.error_message
        check(msg != "" and all(n in msg for n in needles),
              f"stream {rid}: error_message naming {', '.join(repr(n) for n in needles)} "
              f"(got {msg!r})")
        check(a.infer_response.id == rid, f"stream {rid}: the failed request's id echoed")

    s = Stream(c)
    try:
        # One at a time: the stream stays open after an error.
        s.send(c.request(clips[0:1], rid="s0"))
        good(s.read(1)["s0"], "s0", True, 0)
        s.send(c.request(clips[0:1].astype(np.int32), datatype="INT32", rid="s1-bad"))
        bad(s.read(1)["s1-bad"], "s1-bad", name, "INT32")
        s.send(c.request(clips[1:2], raw=False, rid="s2"))
        good(s.read(1)["s2"], "s2", False, 1)
        # Several at once, bad ones in the middle.
        s.send(c.request(to_fp32(clips[2:3]), rid="s3"),
               c.request(clips[0:1], model=UNKNOWN_MODEL, rid="s4-bad"),
               c.request(clips[1:2], params={"priority": ("uint64_param", 99)}, rid="s5-bad"),
               c.request(to_fp32(clips[0:1]), raw=False, rid="s6"),
               c.request(clips[1:2], params={"priority": ("uint64_param", 1)}, rid="s7"))
        got = s.read(5)
        check(sorted(got) == ["s3", "s4-bad", "s5-bad", "s6", "s7"],
              f"stream: one answer per request, ids matching (got {sorted(got)})")
        good(got["s3"], "s3", True, 2)
        bad(got["s4-bad"], "s4-bad", f"'{UNKNOWN_MODEL}'")
        bad(got["s5-bad"], "s5-bad", "priority", "99")
        good(got["s6"], "s6", False, 0)
        good(got["s7"], "s7", True, 1)
    finally:
        s.close()
    try:
        extra = next(s.call)
        raise Failure(f"ModelStreamInfer: an answer nobody asked for: {extra}")
    except StopIteration:
        pass
    check(s.call.code() == grpc.StatusCode.OK,
          f"stream: ends OK once the client half-closes (got {s.call.code()})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the clipserve binary")
    ap.add_argument("--bench-repo", required=True, help="the clipserve-bench-repo binary")
    ap.add_argument("--source-dir", required=True, help="the project's source directory")
    ap.add_argument("--model", default="micro", help="benchmark model to infer with")
    args = ap.parse_args()
    install_signal_handlers()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="clipserve-kserve-test-")
    children = Children()
    channel = None
    ok = False
    try:
        pb2, pb2_grpc, health_pb2, health_pb2_grpc = compile_protos(args.source_dir, tmp)
        repo = os.path.join(tmp, "models")
        run_tool([args.bench_repo, repo], "clipserve-bench-repo")
        model = Model(repo, args.model)
        other = Model(repo, "tiny-b8")
        log(f"model {model.name}: {model.input_name} {model.c}x{model.t}x{model.h}x{model.w}, "
            f"{model.classes} classes, max_batch_size {model.max_batch_size}")

        proc, port, _ = live_util.start_clipserve(children, args.server, repo,
                                                  os.path.join(tmp, "clipserve.log"),
                                                  timeout=START_TIMEOUT)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        c = Client(pb2, pb2_grpc, channel, model)
        health_stub = health_pb2_grpc.HealthStub(channel)

        rng = np.random.default_rng(20240601)
        clips = rng.integers(0, 256, size=model.u8_shape(3), dtype=np.uint8)

        test_health_and_metadata(c, health_pb2, health_stub, model, other)
        before = c.stub.ModelStatistics(pb2.ModelStatisticsRequest(name=model.name),
                                        timeout=RPC_TIMEOUT).model_stats[0]
        ref = test_infer(c, clips)
        test_errors(c, clips, ref)
        test_config_and_statistics(c, model, other, before)
        test_stream(c, clips, ref)

        channel.close()
        channel = None
        rc = children.stop(proc, timeout=STOP_TIMEOUT)
        check(rc == 0, f"clipserve drains and exits 0 on SIGTERM (got {rc})")
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
        if channel is not None:
            channel.close()
        live_util.finish(children, tmp, failed=not ok, keep=False)


if __name__ == "__main__":
    sys.exit(main())
