#!/usr/bin/python3
"""Tests for tools/convert_checkpoint.py.

Makes fake checkpoints shaped like the PyTorch I3D port's (random values,
"module." prefixes, num_batches_tracked), converts them and reads the result
back with the cross-check's independent safetensors reader
(tests/python/i3d_reference.py).

  /usr/bin/python3 tests/python/test_convert_checkpoint.py
(ctest runs it as convert_checkpoint_py.)
"""

import collections
import contextlib
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOL = os.path.join(ROOT, "tools", "convert_checkpoint.py")
sys.path.insert(0, HERE)
import i3d_reference as ref  # noqa: E402


def _load_tool():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


convert = _load_tool()


def fake_port_state_dict(num_classes=400, in_channels=3, seed=1,
                         prefix="module."):
    """An OrderedDict as the port's DataParallel-wrapped model saves it."""
    weights = ref.random_weights(num_classes, in_channels, seed)
    out = collections.OrderedDict()
    for name, t in weights.items():
        out[prefix + name] = t
        if name.endswith(".bn.running_var"):
            out[prefix + name.replace("running_var", "num_batches_tracked")] = \
                torch.tensor(1234, dtype=torch.int64)
    return out


class FakePortModel(torch.nn.Module):
    """A whole pickled model object: the tool only calls its state_dict()."""

    def __init__(self, state):
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):
        return self._state


def run_tool(*argv):
    """Runs the converter's main() in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = convert.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


class ConvertCheckpointTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.rgb = fake_port_state_dict(400, 3, seed=1)
        cls.rgb_zip = os.path.join(cls.dir, "rgb_zip.pt")
        torch.save(cls.rgb, cls.rgb_zip)
        cls.flow = fake_port_state_dict(10, 2, seed=2)
        cls.flow_legacy = os.path.join(cls.dir, "flow_legacy.pt")
        torch.save(cls.flow, cls.flow_legacy,
                   _use_new_zipfile_serialization=False)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_same_weights(self, got, source, dtype=None):
        want = {k[len("module."):] if k.startswith("module.") else k: v
                for k, v in source.items()
                if not k.endswith("num_batches_tracked")}
        self.assertEqual(sorted(got), sorted(want))
        for k, v in want.items():
            if dtype is not None:
                v = v.to(dtype)
            self.assertEqual(got[k].dtype, v.dtype, k)
            self.assertEqual(tuple(got[k].shape), tuple(v.shape), k)
            self.assertTrue(torch.equal(got[k], v), k)

    def test_fake_checkpoint_matches_layout(self):
        # The fixture itself: 57 BN layers' num_batches_tracked and the
        # spec's parameter counts.
        self.assertEqual(sum(k.endswith("num_batches_tracked")
                             for k in self.rgb), 57)
        info = convert.summary(convert.normalize(self.rgb))
        self.assertEqual(info["parameters"], 12697264)
        self.assertEqual(info["bn_running_stats"], 14560)
        self.assertEqual(info["num_classes"], 400)
        self.assertEqual(info["in_channels"], 3)

    def test_zip_state_dict_to_safetensors(self):
        out = self.path("rgb.safetensors")
        code, stdout, stderr = run_tool(self.rgb_zip, "-o", out, "--check")
        self.assertEqual(code, 0, stderr)
        self.assertIn("check: OK", stdout)
        summary = json.loads(stdout.splitlines()[0])
        self.assertEqual(summary["tensors"], 57 * 5 + 2)
        self.assertEqual(summary["parameters"], 12697264)
        self.assertEqual(summary["num_classes"], 400)
        self.assertEqual(summary["in_channels"], 3)
        self.assert_same_weights(ref.read_safetensors(out), self.rgb)

    def test_safetensors_framing(self):
        out = self.path("framing.safetensors")
        code, _, stderr = run_tool(self.flow_legacy, "-o", out)
        self.assertEqual(code, 0, stderr)
        with open(out, "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        self.assertEqual((8 + n) % 8, 0)  # data 8-byte aligned
        text = blob[8:8 + n].decode("utf-8")
        body = text.rstrip(" ")
        self.assertTrue(body.endswith("}"))  # padding: spaces only
        self.assertLess(len(text) - len(body), 8)
        header = json.loads(text)
        names = list(header)
        self.assertEqual(names, sorted(names))
        self.assertNotIn("__metadata__", header)
        # Offsets are contiguous in name order and cover the data exactly.
        end = 0
        for name in names:
            begin, stop = header[name]["data_offsets"]
            self.assertEqual(begin, end, name)
            end = stop
        self.assertEqual(end, len(blob) - 8 - n)

    def test_legacy_format_to_safetensors(self):
        # Make sure the fixture really is the pre-1.6 (non-zip) format.
        self.assertFalse(zipfile.is_zipfile(self.flow_legacy))
        out = self.path("flow.safetensors")
        code, stdout, stderr = run_tool(self.flow_legacy, "-o", out, "--check")
        self.assertEqual(code, 0, stderr)
        summary = json.loads(stdout.splitlines()[0])
        self.assertEqual(summary["num_classes"], 10)
        self.assertEqual(summary["in_channels"], 2)
        self.assert_same_weights(ref.read_safetensors(out), self.flow)
        # And the reference loads it as a model.
        w = ref.load_weights(out)
        x = torch.rand(1, 2, 9, 32, 32) * 2 - 1
        self.assertEqual(tuple(ref.i3d_forward(x, w).shape), (1, 10))

    def test_dtypes(self):
        for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16),
                            ("f32", torch.float32)):
            out = self.path(f"flow_{name}.safetensors")
            code, _, stderr = run_tool(self.flow_legacy, "-o", out,
                                       "--dtype", name)
            self.assertEqual(code, 0, stderr)
            self.assert_same_weights(ref.read_safetensors(out), self.flow,
                                     dtype)

    def test_keep_dtype_f16_input(self):
        half = collections.OrderedDict(
            (k, v.half() if v.is_floating_point() else v)
            for k, v in self.flow.items())
        src = self.path("flow_half.pt")
        torch.save(half, src)
        out = self.path("flow_half.safetensors")
        code, _, stderr = run_tool(src, "-o", out)
        self.assertEqual(code, 0, stderr)
        self.assert_same_weights(ref.read_safetensors(out), half)

    def test_to_pth_plain_dict(self):
        out = self.path("model.pth")
        code, _, stderr = run_tool(self.flow_legacy, "-o", out, "--to-pth")
        self.assertEqual(code, 0, stderr)
        self.assertTrue(zipfile.is_zipfile(out))
        loaded = torch.load(out)
        self.assertIs(type(loaded), dict)  # not an OrderedDict
        self.assert_same_weights(loaded, self.flow)

    def test_wrapped_state_dict(self):
        src = self.path("wrapped.pt")
        torch.save({"epoch": 3, "state_dict": self.flow}, src)
        out = self.path("wrapped.safetensors")
        code, _, stderr = run_tool(src, "-o", out, "--check")
        self.assertEqual(code, 0, stderr)
        self.assert_same_weights(ref.read_safetensors(out), self.flow)

    def test_whole_model_object_needs_trust(self):
        src = self.path("whole_model.pt")
        torch.save(FakePortModel(self.flow), src)
        out = self.path("whole.safetensors")
        code, _, stderr = run_tool(src, "-o", out)
        self.assertEqual(code, 2)
        self.assertIn("--trust-pickle", stderr)
        self.assertFalse(os.path.exists(out))
        code, _, stderr = run_tool(src, "-o", out, "--trust-pickle", "--check")
        self.assertEqual(code, 0, stderr)
        self.assert_same_weights(ref.read_safetensors(out), self.flow)

    def test_check_reports_wrong_shape_and_writes_nothing(self):
        bad = collections.OrderedDict(self.flow)
        bad["module.Mixed_4c.b1b.conv3d.weight"] = \
            torch.zeros(224, 112, 3, 3, 1)
        src = self.path("bad_shape.pt")
        torch.save(bad, src)
        out = self.path("bad_shape.safetensors")
        code, stdout, stderr = run_tool(src, "-o", out, "--check")
        self.assertEqual(code, 1)
        self.assertIn("wrong shape: Mixed_4c.b1b.conv3d.weight: "
                      "[224, 112, 3, 3, 1], want [224, 112, 3, 3, 3]", stdout)
        self.assertIn("FAILED (0 missing, 0 unexpected, 1 wrong shape)", stderr)
        self.assertFalse(os.path.exists(out))

    def test_check_reports_missing_and_unexpected(self):
        bad = collections.OrderedDict(self.flow)
        del bad["module.Mixed_5c.b3b.bn.running_mean"]
        bad["module.fc.weight"] = torch.zeros(3)
        src = self.path("bad_keys.pt")
        torch.save(bad, src)
        code, stdout, stderr = run_tool(src, "--check-only")
        self.assertEqual(code, 1)
        self.assertIn("missing: Mixed_5c.b3b.bn.running_mean", stdout)
        self.assertIn("unexpected: fc.weight", stdout)
        self.assertIn("FAILED (1 missing, 1 unexpected, 0 wrong shape)", stderr)

    def test_not_a_checkpoint(self):
        src = self.path("garbage.pt")
        with open(src, "wb") as f:
            f.write(b"not a checkpoint")
        code, _, stderr = run_tool(src, "-o", self.path("garbage.safetensors"))
        self.assertEqual(code, 2)
        self.assertIn("convert_checkpoint:", stderr)

    def test_command_line(self):
        # The script as users run it, in a fresh interpreter.
        out = self.path("cli.safetensors")
        proc = subprocess.run(
            [sys.executable, TOOL, self.flow_legacy, "-o", out, "--check"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("check: OK", proc.stdout)
        self.assert_same_weights(ref.read_safetensors(out), self.flow)


class ReferenceReaderTest(unittest.TestCase):
    """The reference's own reader and key handling."""

    def test_module_prefix_and_num_batches_tracked(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "w.safetensors")
            state = fake_port_state_dict(10, 2, seed=3)
            tensors = {k: v for k, v in state.items()}
            ref.write_safetensors(path, tensors)
            w = ref.load_weights(path)
            self.assertNotIn("module.logits.conv3d.bias", w)
            self.assertEqual(tuple(w["logits.conv3d.bias"].shape), (10,))
            self.assertFalse(any(k.endswith("num_batches_tracked") for k in w))

    def test_same_padding(self):
        self.assertEqual(ref.same_padding(224, 7, 2), (2, 3))
        self.assertEqual(ref.same_padding(112, 3, 2), (0, 1))
        self.assertEqual(ref.same_padding(7, 3, 2), (1, 1))
        self.assertEqual(ref.same_padding(16, 1, 1), (0, 0))
        self.assertEqual(ref.same_padding(4, 2, 2), (0, 0))
        self.assertEqual(ref.same_padding(5, 2, 2), (0, 1))

    def test_feature_sizes(self):
        # The SAME rule's output size is ceil(s / stride); following it down
        # the trunk: 224 -> 7 spatially, 16 frames -> 2 and 64 -> 8, so the
        # (2, 7, 7) head leaves T' = 1 and 7 (spec).
        def trunk(t, h, w):
            for step in ref.TRUNK:
                if step[0] in ("unit", "pool"):
                    st = step[3]
                    t, h, w = -(-t // st[0]), -(-h // st[1]), -(-w // st[2])
            return t, h, w
        self.assertEqual(trunk(16, 224, 224), (2, 7, 7))
        self.assertEqual(trunk(64, 224, 224), (8, 7, 7))

    def test_zero_padded_max_pool_equals_ignoring_padding(self):
        # The reference pads max-pools with zeros; for x >= 0 (ReLU output)
        # that equals TF's SAME pool, which ignores padded cells (-inf).
        torch.manual_seed(0)
        x = torch.relu(torch.randn(2, 4, 5, 9, 8))
        for kernel, stride in (((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)),
                               ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))):
            pads = [ref.same_padding(s, k, st) for s, k, st in
                    zip(x.shape[2:], kernel, stride)]
            flat = (pads[2][0], pads[2][1], pads[1][0], pads[1][1],
                    pads[0][0], pads[0][1])
            ignoring = torch.nn.functional.max_pool3d(
                torch.nn.functional.pad(x, flat, value=float("-inf")),
                kernel, stride)
            self.assertTrue(torch.equal(ref.max_pool_same(x, kernel, stride),
                                        ignoring))

    def test_forward_shapes(self):
        w = ref.random_weights(7, 2, seed=0)
        with torch.inference_mode():
            y = ref.i3d_forward(torch.rand(3, 2, 9, 40, 48) * 2 - 1, w)
        self.assertEqual(tuple(y.shape), (3, 7))
        self.assertTrue(torch.isfinite(y).all())


if __name__ == "__main__":
    unittest.main()
