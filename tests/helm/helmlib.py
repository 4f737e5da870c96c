"""Shared helpers of the Helm chart tests: run helm, render the chart, and
validate rendered documents offline against the Kubernetes schemas.

The tests run with the project's virtual environment (.venv/bin/python:
PyYAML, jsonschema, kubernetes-validate; scripts/install-deps.sh makes it).
The tools come from scripts/fetch-k8s-tools.sh (the ctest fixture
helm_fetch_tools runs it): helm in $CLIPSERVE_TOOLS_DIR/bin, the
prometheus-operator CRD schemas in $CLIPSERVE_TOOLS_DIR/crd-schemas (default:
.tools in the source tree); k8s_validate.py checks the documents against
them and kubernetes-validate's. helm runs with its cache, config and data
homes in a temporary directory, so the tests touch nothing of the user's.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "helm", "clipserve")
EXAMPLES = os.path.join(CHART, "examples")
TOOLS = os.environ.get("CLIPSERVE_TOOLS_DIR") or os.path.join(REPO, ".tools")
HELM = os.path.join(TOOLS, "bin", "helm")
CRD_SCHEMAS = os.path.join(TOOLS, "crd-schemas")
VALIDATOR = os.path.join(HERE, "k8s_validate.py")

# The values files the chart is tested with (None: the defaults).
VARIANTS = {
    "default": None,
    "gpu": os.path.join(EXAMPLES, "values-gpu.yaml"),
    "autoscaling": os.path.join(EXAMPLES, "values-autoscaling.yaml"),
    "tls": os.path.join(EXAMPLES, "values-tls.yaml"),
}

_homes = tempfile.mkdtemp(prefix="clipserve-helm-test-")
atexit.register(shutil.rmtree, _homes, True)


def _env():
    env = dict(os.environ)
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data")):
        env[var] = os.path.join(_homes, sub)
    return env


def check_tools():
    try:
        import jsonschema  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as e:
        sys.exit("%s: %s; run the tests with the project's .venv/bin/python "
                 "(scripts/install-deps.sh makes it)" % (sys.executable, e))
    missing = [p for p in (HELM, os.path.join(CRD_SCHEMAS, "SOURCE.json")) if not os.path.exists(p)]
    if missing:
        sys.exit("missing: %s; run scripts/fetch-k8s-tools.sh" % ", ".join(missing))


def helm(*args, check=True):
    """Runs helm; returns the CompletedProcess (stdout and stderr as text)."""
    p = subprocess.run([HELM, *args], capture_output=True, text=True, env=_env())
    if check and p.returncode != 0:
        raise AssertionError("helm %s failed (%d):\n%s%s"
                             % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def values_args(values_files=(), sets=()):
    args = []
    for f in values_files:
        if f:
            args += ["-f", f]
    for s in sets:
        args += ["--set", s]
    return args


def template(values_files=(), sets=(), release="clipserve", namespace="video", check=True):
    """`helm template` of the chart; the CompletedProcess."""
    return helm("template", release, CHART, "--namespace", namespace,
                *values_args(values_files, sets), check=check)


def render(values_files=(), sets=(), release="clipserve", namespace="video"):
    """The rendered documents (empty ones dropped), test hooks included."""
    out = template(values_files, sets, release, namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d is not None]


def validate(docs, label="rendered", names=None):
    """Runs the offline schema validator; returns (returncode, output). Each
    document is reported as names[i], or "label #i"."""
    if names is None:
        names = ["%s #%d" % (label, i) for i in range(len(docs))]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"name": n, "doc": d} for n, d in zip(names, docs)], f)
        path = f.name
    try:
        p = subprocess.run([sys.executable, VALIDATOR, "--crd-schemas", CRD_SCHEMAS, path],
                           capture_output=True, text=True)
    finally:
        os.unlink(path)
    return p.returncode, p.stdout + p.stderr


def find(docs, kind, name_suffix=None):
    """The documents of `kind` (whose name ends with name_suffix, if given)."""
    return [d for d in docs if d.get("kind") == kind and
            (name_suffix is None or d["metadata"]["name"].endswith(name_suffix))]


def one(docs, kind, name_suffix=None):
    found = find(docs, kind, name_suffix)
    if len(found) != 1:
        raise AssertionError("expected one %s%s, found %d" % (
            kind, " *" + name_suffix if name_suffix else "", len(found)))
    return found[0]
