#!/usr/bin/python3
"""Writes a checkpoint as the PyTorch I3D port's users have them, for tests.

Takes the tensors of a .safetensors file (port key names) and saves them
with torch.save the way a DataParallel-trained port model's state_dict
comes out: an OrderedDict, every key prefixed "module.", a
num_batches_tracked int64 scalar after each BatchNorm's running_var; in the
zip format, or with --legacy the pre-1.6 pickle format of the port's
released .pt files.

  /usr/bin/python3 tests/python/make_port_checkpoint.py \\
      --weights W.safetensors --output port.pt [--legacy]
"""

import argparse
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import i3d_reference as ref  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--legacy", action="store_true",
                   help="pre-1.6 (non-zip) torch.save format")
    args = p.parse_args(argv)
    tensors = ref.read_safetensors(args.weights)
    state = collections.OrderedDict()
    for name in sorted(tensors):
        state["module." + name] = tensors[name]
        if name.endswith(".bn.running_var"):
            state["module." + name[:-len("running_var")] +
                  "num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    torch.save(state, args.output,
               _use_new_zipfile_serialization=not args.legacy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
