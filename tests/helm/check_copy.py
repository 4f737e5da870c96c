#!/usr/bin/env python3
"""check_copy.py ORIGINAL COPY: the chart's copy of a deploy/ file must be
byte-identical (the chart embeds it with .Files.Get, which reads only inside
the chart). On a difference prints the diff and the command that fixes it."""
import difflib
import sys


def main():
    original, copy = sys.argv[1:3]
    with open(original, "rb") as f:
        a = f.read()
    with open(copy, "rb") as f:
        b = f.read()
    if a == b:
        print("PASS: %s is identical to %s (%d bytes)" % (copy, original, len(a)))
        return
    sys.stdout.writelines(difflib.unified_diff(
        a.decode(errors="replace").splitlines(True), b.decode(errors="replace").splitlines(True),
        original, copy))
    sys.exit("FAIL: %s differs from %s; after changing the original run:\n  cp %s %s"
             % (copy, original, original, copy))


if __name__ == "__main__":
    main()
