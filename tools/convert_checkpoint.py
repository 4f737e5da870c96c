#!/usr/bin/python3
"""Converts an Inception-I3D PyTorch checkpoint to clipserve's weights file.

Reads what the widely used PyTorch port of I3D saves (its state_dict names:
"Conv3d_1a_7x7.conv3d.weight", "Mixed_3b.b1b.bn.running_var", ...,
"logits.conv3d.bias"):
  * a torch.save'd state_dict (OrderedDict or dict), zip format (PyTorch
    >= 1.6) or the older pickle format (e.g. the port's rgb_imagenet.pt);
  * a dict wrapping one, under "state_dict", "model_state_dict" or "model";
  * a whole pickled model object with a state_dict() method (needs
    --trust-pickle and the model's class importable, e.g. via PYTHONPATH).
A leading "module." (DataParallel) is stripped and num_batches_tracked
dropped. Writes model.safetensors (default) or, with --to-pth, a zip-format
torch.save of a plain dict (which LibTorch's torch::pickle_load reads; a raw
OrderedDict comes back there as None).

  /usr/bin/python3 tools/convert_checkpoint.py rgb_imagenet.pt \\
      -o models/i3d/1/model.safetensors --check

Needs PyTorch (Debian: python3-torch). The safetensors file is written by
the small pure-Python writer below, not the safetensors package.
"""

import argparse
import collections
import json
import os
import struct
import sys

import torch

# Inception blocks: name -> (in channels, b0, b1a, b1b, b2a, b2b, b3b).
_MIXED = [
    ("Mixed_3b", (192, 64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (256, 128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (480, 192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (512, 160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (512, 128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (512, 112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (528, 256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (832, 256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (832, 384, 192, 384, 48, 128, 128)),
]


def i3d_layout(num_classes=400, in_channels=3):
    """The I3D checkpoint's keys -> shapes (the PyTorch port's names)."""
    layout = collections.OrderedDict()

    def unit(prefix, cin, cout, k):
        layout[prefix + ".conv3d.weight"] = (cout, cin, k, k, k)
        for s in ("weight", "bias", "running_mean", "running_var"):
            layout[prefix + ".bn." + s] = (cout,)

    unit("Conv3d_1a_7x7", in_channels, 64, 7)
    unit("Conv3d_2b_1x1", 64, 64, 1)
    unit("Conv3d_2c_3x3", 64, 192, 3)
    for name, (cin, b0, b1a, b1b, b2a, b2b, b3b) in _MIXED:
        unit(name + ".b0", cin, b0, 1)
        unit(name + ".b1a", cin, b1a, 1)
        unit(name + ".b1b", b1a, b1b, 3)
        unit(name + ".b2a", cin, b2a, 1)
        unit(name + ".b2b", b2a, b2b, 3)
        unit(name + ".b3b", cin, b3b, 1)
    layout["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    layout["logits.conv3d.bias"] = (num_classes,)
    return layout


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------

class ConvertError(Exception):
    pass


def _torch_load(path, trust_pickle):
    """torch.load, restricted to tensors and containers unless trusted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:
        # A PyTorch too old for weights_only (< 1.13).
        if not trust_pickle:
            raise ConvertError(
                "this PyTorch has no torch.load(weights_only=True); rerun "
                "with --trust-pickle if you trust the file")
        return torch.load(path, map_location="cpu")
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, ...
        if not trust_pickle:
            raise ConvertError(
                f"{path}: not a plain tensor checkpoint ({e}). If it is a "
                "whole pickled model you trust, rerun with --trust-pickle "
                "(unpickling runs arbitrary code; the model's class must be "
                "importable)") from e
        return torch.load(path, map_location="cpu", weights_only=False)


def _is_tensor_dict(obj):
    return (isinstance(obj, dict) and obj
            and all(isinstance(k, str) for k in obj)
            and all(torch.is_tensor(v) for v in obj.values()))


def extract_state_dict(obj):
    """The {name: tensor} inside whatever torch.load returned."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict) \
            and not isinstance(obj, dict):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if hasattr(inner, "state_dict") and not isinstance(inner, dict):
                inner = inner.state_dict()
            if _is_tensor_dict(inner):
                obj = inner
                break
    if not _is_tensor_dict(obj):
        keys = (f" with keys {sorted(map(str, obj))[:8]}"
                if isinstance(obj, dict) else "")
        raise ConvertError(
            f"no state_dict found (got {type(obj).__name__}{keys})")
    return obj


def normalize(state_dict):
    """Strips "module.", drops num_batches_tracked; keeps order."""
    out = collections.OrderedDict()
    for name, t in state_dict.items():
        if name.startswith("module."):
            name = name[len("module."):]
        if name.split(".")[-1] == "num_batches_tracked":
            continue
        if name in out:
            raise ConvertError(f"duplicate key after stripping module.: {name}")
        out[name] = t.detach().cpu().contiguous()
    return out


_CAST = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def cast(state_dict, dtype_name):
    """--dtype: "keep" keeps F32/F16/BF16 and makes F64 F32."""
    out = collections.OrderedDict()
    for name, t in state_dict.items():
        if t.is_floating_point():
            if dtype_name == "keep":
                if t.dtype == torch.float64:
                    t = t.to(torch.float32)
            else:
                t = t.to(_CAST[dtype_name])
        out[name] = t
    return out


# ---------------------------------------------------------------------------
# Checking and summarising.
# ---------------------------------------------------------------------------

def infer_dims(state_dict):
    """(num_classes, in_channels) from the logits bias and the first conv."""
    classes = channels = None
    bias = state_dict.get("logits.conv3d.bias")
    if bias is not None and bias.dim() == 1:
        classes = int(bias.shape[0])
    else:
        w = state_dict.get("logits.conv3d.weight")
        if w is not None and w.dim() >= 1:
            classes = int(w.shape[0])
    first = state_dict.get("Conv3d_1a_7x7.conv3d.weight")
    if first is not None and first.dim() >= 2:
        channels = int(first.shape[1])
    return classes, channels


def check(state_dict):
    """(missing, unexpected, wrong_shaped) against the I3D layout; each a
    list of strings."""
    classes, channels = infer_dims(state_dict)
    layout = i3d_layout(classes or 400, channels or 3)
    missing = [k for k in layout if k not in state_dict]
    unexpected = [k for k in state_dict if k not in layout]
    wrong = [f"{k}: {list(state_dict[k].shape)}, want {list(shape)}"
             for k, shape in layout.items()
             if k in state_dict and tuple(state_dict[k].shape) != shape]
    return missing, unexpected, wrong


def summary(state_dict):
    classes, channels = infer_dims(state_dict)
    params = sum(t.numel() for k, t in state_dict.items()
                 if not k.endswith(("running_mean", "running_var")))
    buffers = sum(t.numel() for k, t in state_dict.items()
                  if k.endswith(("running_mean", "running_var")))
    dtypes = collections.Counter(str(t.dtype).replace("torch.", "")
                                 for t in state_dict.values())
    return {
        "tensors": len(state_dict),
        "parameters": params,
        "bn_running_stats": buffers,
        "num_classes": classes,
        "in_channels": channels,
        "dtypes": dict(sorted(dtypes.items())),
    }


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------

_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensor_bytes(t):
    """The tensor's elements as little-endian bytes, C order."""
    if sys.byteorder != "little":
        raise ConvertError("writing safetensors needs a little-endian host")
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    # A uint8 view reinterprets the storage, so bf16 needs no numpy dtype.
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def write_safetensors(path, state_dict):
    """safetensors: u64 LE header size, JSON header (keys sorted; padded
    with spaces to a multiple of 8 so the data starts 8-byte aligned), then
    the tensors' bytes in header order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(state_dict):
        t = state_dict[name]
        if t.dtype not in _ST_DTYPES:
            raise ConvertError(
                f"{name}: dtype {t.dtype} has no safetensors name")
        raw = tensor_bytes(t)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    text = text.encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def write_pth(path, state_dict):
    """A zip-format torch.save of a plain dict (not an OrderedDict)."""
    tmp = path + ".tmp"
    torch.save(dict(state_dict), tmp, _use_new_zipfile_serialization=True)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# CLI.
# ---------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(
        description="Convert an I3D PyTorch checkpoint for clipserve.",
        epilog="Exit status: 0 done, 1 --check found problems, 2 bad input.")
    p.add_argument("input", help="checkpoint (.pt/.pth) saved by torch.save")
    p.add_argument("-o", "--output",
                   help="file to write (default: model.safetensors, or "
                        "model.pth with --to-pth, in the current directory)")
    p.add_argument("--to-pth", action="store_true",
                   help="write a zip torch.save of a plain dict instead")
    p.add_argument("--dtype", choices=["keep", "f32", "f16", "bf16"],
                   default="keep",
                   help="floating-point type to store (keep: as in the input, "
                        "float64 becomes f32)")
    p.add_argument("--check", action="store_true",
                   help="validate the keys and shapes against the I3D layout; "
                        "with problems, list them and write nothing")
    p.add_argument("--check-only", action="store_true",
                   help="validate only, write nothing")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow full unpickling (whole model objects); runs "
                        "arbitrary code from the file")
    args = p.parse_args(argv)

    try:
        state = normalize(extract_state_dict(
            _torch_load(args.input, args.trust_pickle)))
        state = cast(state, args.dtype)
    except (ConvertError, OSError) as e:
        print(f"convert_checkpoint: {e}", file=sys.stderr)
        return 2

    info = summary(state)
    print(json.dumps(info))

    if args.check or args.check_only:
        missing, unexpected, wrong = check(state)
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong)):
            for item in items:
                print(f"{title}: {item}")
        if missing or unexpected or wrong:
            print(f"check: FAILED ({len(missing)} missing, {len(unexpected)} "
                  f"unexpected, {len(wrong)} wrong shape)", file=sys.stderr)
            return 1
        print(f"check: OK ({len(state)} tensors match the I3D layout for "
              f"{info['num_classes']} classes, {info['in_channels']} channels)")
        if args.check_only:
            return 0

    out = args.output or ("model.pth" if args.to_pth else "model.safetensors")
    try:
        if args.to_pth:
            write_pth(out, state)
        else:
            write_safetensors(out, state)
    except (ConvertError, OSError) as e:
        print(f"convert_checkpoint: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
