"""The metrics contract, read from docs/metrics.md (for the deploy tests)."""
import re

# docs/metrics.md, "Duration buckets": every duration histogram's default
# upper bounds in seconds.
DEFAULT_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                            0.25, 0.5, 1, 2.5, 5, 10, 30]


def documented_metrics(path):
    """{name: (type, labels)} from docs/metrics.md's tables and the process list."""
    metrics = {}
    section_labels = set()
    with open(path) as f:
        text = f.read()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 3 and re.fullmatch(r"`[a-z_:][a-z0-9_:]*`", cells[0]):
            name = cells[0].strip("`")
            kind = cells[1]
            if kind not in ("counter", "gauge", "histogram"):
                continue
            labels = set(re.findall(r"`(\w+)`", cells[2])) if len(cells) >= 4 else set()
            metrics[name] = (kind, labels)
    # GPU metrics: labels stated in the prose above their table.
    m = re.search(r"Labels: `(\w+)` \(the\s+index\) and `(\w+)`", text)
    if m:
        section_labels = {m.group(1), m.group(2)}
    for name, (kind, labels) in list(metrics.items()):
        if name.startswith("clipserve_gpu_") and not labels:
            metrics[name] = (kind, section_labels)
    for name in re.findall(r"`(process_[a-z_]+)`", text):
        metrics.setdefault(name, ("counter" if name.endswith("_total") else "gauge", set()))
    return metrics


def duration_buckets(path):
    """The default duration buckets docs/metrics.md states (falls back to
    DEFAULT_DURATION_BUCKETS where the sentence cannot be found)."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"Duration buckets.*?increasing\):\s*([0-9.,\s]+?):", text, re.S)
    if not m:
        return DEFAULT_DURATION_BUCKETS
    return [float(x) for x in re.split(r"[,\s]+", m.group(1).strip()) if x]


def report(problems):
    """Prints OK, or FAILED and every problem; the exit status for main()."""
    if problems:
        print("FAILED:")
        for p in problems:
            print("  " + p)
        return 1
    print("OK")
    return 0
