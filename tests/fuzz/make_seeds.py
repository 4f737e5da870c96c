#!/usr/bin/env python3
"""Seed inputs for the fuzz targets that read files and messages rather than
videos (make_seeds.sh makes the video ones and calls this):

    python make_seeds.py OUT_DIR PROTO_DIR

OUT_DIR/<target>/ gets a few small valid inputs of each kind, and a few
near misses, so that fuzzing starts from deep inside each parser:
model_config (config.pbtxt text), safetensors, pth (torch.save zip; needs
torch), npy, kserve_infer (ModelInferRequest) and classify_request
(ClassifyRequest), the two messages encoded from text format with protoc.
The models the request targets check against take 3 x 4 x 8 x 8 clips
(tests/fuzz/request_fuzz.h).
"""
import io
import json
import os
import struct
import subprocess
import sys

import numpy as np

out, proto_dir = sys.argv[1], sys.argv[2]


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    mode = "w" if isinstance(data, str) else "wb"
    with open(os.path.join(out, target, name), mode) as f:
        f.write(data)


# ---- config.pbtxt ----
base = """name: "m"
backend: "torchscript"
max_batch_size: 8
input [ { name: "clip" data_type: TYPE_FP32 dims: [ 3, 8, 32, 32 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 5 ] } ]
"""
put("model_config", "minimal.pbtxt", base)
put("model_config", "batching.pbtxt", base + """dynamic_batching {
  max_queue_delay_microseconds: 2000
  preferred_batch_size: [ 4, 8 ]
  max_queue_size: 64
  priority_levels: 3
  default_priority_level: 2
  default_timeout_microseconds: 500000
}
instance_group [ { kind: KIND_CPU count: 2 } ]
parameters { key: "batch_buckets" value: { string_value: "1,4" } }
parameters { key: "intra_op_threads" value: { string_value: "1" } }
""")
put("model_config", "gpu.pbtxt", base + """instance_group [ { kind: KIND_GPU count: 1 gpus: [ 0, 1 ] } ]
parameters { key: "precision" value: { string_value: "fp16" } }
parameters { key: "cuda_graphs" value: { string_value: "true" } }
""")
put("model_config", "versions.pbtxt", base + """version_policy { specific { versions: [ 1, 3 ] } }
version_labels { key: "stable" value: 1 }
version_labels { key: "canary" value: 3 }
""")
put("model_config", "i3d_free.pbtxt", base.replace('"torchscript"', '"i3d"')
    .replace("[ 3, 8, 32, 32 ]", "[ 3, -1, -1, -1 ]"))

# ---- safetensors ----
def safetensors(tensors, metadata=None, pad=True):
    header, blobs, at = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


f32 = np.arange(6, dtype="<f4").tobytes()
put("safetensors", "f32.safetensors",
    safetensors({"w": ("F32", [2, 3], f32), "b": ("F32", [3], f32[:12])},
                {"format": "pt"}))
put("safetensors", "f16_bf16.safetensors",
    safetensors({"h": ("F16", [2, 2], np.ones(4, "<f2").tobytes()),
                 "g": ("BF16", [4], b"\x80\x3f" * 4),
                 "s": ("F32", [], f32[:4])}))
put("safetensors", "empty_tensor.safetensors",
    safetensors({"e": ("F32", [0, 3], b"")}, pad=False))
put("safetensors", "i64.safetensors",
    safetensors({"i": ("I64", [1], b"\x01" + b"\x00" * 7)}))

# ---- .pth (torch.save, zip format) ----
try:
    import torch
    for name, value in {
            "dict.pth": {"w": torch.ones(2, 3), "b": torch.zeros(3)},
            "wrapped.pth": {"state_dict": {"conv.weight": torch.ones(1, 1, 2),
                                           "n": torch.tensor(3)}},
            "half.pth": {"h": torch.ones(4, dtype=torch.float16)},
    }.items():
        buffer = io.BytesIO()
        torch.save(value, buffer)
        put("pth", name, buffer.getvalue())
except ImportError:
    sys.exit("make_seeds.py: the pth seeds need torch (the project's venv)")

# ---- .npy ----
for name, array in {
        "u8.npy": np.arange(2 * 4 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 4, 8, 8, 3),
        "f32.npy": np.linspace(-1, 1, 3 * 4 * 8 * 8, dtype="<f4").reshape(3, 4, 8, 8),
        "scalar.npy": np.array(1.5, dtype="<f8"),
}.items():
    buffer = io.BytesIO()
    np.save(buffer, array)
    put("npy", name, buffer.getvalue())


# ---- messages, from text format ----
def encode(message_type, proto, text):
    return subprocess.run(
        ["protoc", "-I", proto_dir, "--encode=" + message_type, proto],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def octal(data):
    return "".join("\\%03o" % b for b in data)


u8 = bytes(range(256)) * 3             # one clip [4, 8, 8, 3] of uint8
fp = np.zeros(3 * 4 * 8 * 8, "<f4").tobytes()  # one clip [3, 4, 8, 8] of fp32
infer = ("inference.ModelInferRequest", "inference/grpc_service.proto")
put("kserve_infer", "raw_fp32", encode(*infer, f"""
model_name: "fuzz" id: "a"
inputs {{ name: "clip" datatype: "FP32" shape: [ 1, 3, 4, 8, 8 ] }}
outputs {{ name: "logits" }}
raw_input_contents: "{octal(fp)}"
"""))
put("kserve_infer", "raw_uint8_batch", encode(*infer, f"""
model_name: "fuzz"
inputs {{ name: "clip" datatype: "UINT8" shape: [ 2, 4, 8, 8, 3 ] }}
outputs {{ name: "probabilities" }} outputs {{ name: "logits" }}
parameters {{ key: "priority" value {{ uint64_param: 1 }} }}
parameters {{ key: "timeout" value {{ int64_param: 100000 }} }}
raw_input_contents: "{octal(u8 + u8)}"
"""))
put("kserve_infer", "typed_uint8", encode(*infer, """
model_name: "fuzz"
inputs { name: "clip" datatype: "UINT8" shape: [ 1, 4, 8, 8, 3 ]
  contents { uint_contents: [ %s ] } }
""" % ", ".join(str(b) for b in u8)))
put("kserve_infer", "typed_fp32", encode(*infer, """
model_name: "fuzz"
inputs { name: "clip" datatype: "FP32" shape: [ 1, 3, 4, 8, 8 ]
  contents { fp32_contents: [ %s ] } }
outputs { name: "logits" parameters { key: "classification" value { int64_param: 2 } } }
""" % ", ".join("0.5" for _ in range(3 * 4 * 8 * 8))))

classify = ("clipserve.v1.ClassifyRequest", "clipserve/v1/video_classifier.proto")
put("classify_request", "uint8_clip", encode(*classify, f"""
model_name: "fuzz" top_k: 3 return_logits: true priority: 1
clip {{ dtype: UINT8 shape: [ 4, 8, 8, 3 ] data: "{octal(u8)}" }}
"""))
put("classify_request", "fp32_clip", encode(*classify, f"""
clip {{ dtype: FP32 shape: [ 3, 4, 8, 8 ] data: "{octal(fp)}" }}
"""))
put("classify_request", "video_stride", encode(*classify, """
model_name: "fuzz"
video { data: "\\000\\000\\000\\030ftypmp42" sampling { mode: STRIDE num_frames: 4 stride: 2 start_seconds: 0.5 } }
"""))
put("classify_request", "video_uniform", encode(*classify, """
video { uri: "file:///videos/a.mp4" sampling { num_frames: 4 approximate: true } }
"""))
