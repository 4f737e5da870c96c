#!/usr/bin/env python3
"""Offline validation of Kubernetes manifests against the API's schemas.

  k8s_validate.py --crd-schemas DIR [--kubernetes-version V] FILE.json

Run it with the project's virtual environment (.venv/bin/python: it imports
kubernetes_validate and jsonschema). FILE.json: a JSON array of
{"name": "...", "doc": {...}} (the rendered documents; tests/helm/helmlib.py
converts Helm's YAML). DIR: the custom resources' schemas that
scripts/fetch-k8s-tools.sh writes (.tools/crd-schemas, made by
crd_schemas.py). V: the Kubernetes version (default 1.35, the kubectl that
fetch-k8s-tools.sh pins).

Each document is checked against the schema of its apiVersion and kind,
strictly (a field the schema does not define is an error, as with
`kubectl --validate=strict`):
  - monitoring.coreos.com kinds (ServiceMonitor, PrometheusRule, PodMonitor,
    ...): the prometheus-operator CRD schemas in DIR (types, required
    fields, enums, patterns such as durations), metadata as Kubernetes'
    ObjectMeta;
  - every other kind: kubernetes-validate, strict, for version V
    (kubernetes_validate.validate(doc, V, strict=True), exactly what
    `kubernetes-validate --strict -k V` runs). It stops at the first error
    and checks no OpenAPI format, so the same schema is also walked in full,
    reporting every error, with the formats checked: Kubernetes quantities
    (resources, ...) and int32/int64 ranges;
  - any other apiVersion/kind fails: nothing goes unchecked (the
    kubernetes-validate command only warns there).

Prints one line per document ("ok ..." or "FAIL ..." and its errors, each as
"     /json/pointer: message"); exits 1 if any document fails, 2 on bad use.
"""
import argparse
import functools
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

DEFAULT_KUBERNETES_VERSION = "1.35"
CRD_GROUPS = ("monitoring.coreos.com",)
QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# k8s.io/apimachinery's Quantity, as its OpenAPI format "quantity" (the
# pattern Kubernetes puts in CRDs for int-or-string quantities).
QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                      r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("quantity")
def _quantity(value):
    return not isinstance(value, str) or bool(QUANTITY.match(value))


@FORMATS.checks("int32")
def _int32(value):
    return not isinstance(value, int) or -2**31 <= value < 2**31


@FORMATS.checks("int64")
def _int64(value):
    return not isinstance(value, int) or -2**63 <= value < 2**63


def die(message):
    print("k8s_validate: " + message, file=sys.stderr)
    sys.exit(2)


class Validator:
    def __init__(self, crd_dir, version):
        if not os.path.isdir(crd_dir):
            die("%s missing; run scripts/fetch-k8s-tools.sh" % crd_dir)
        self.crd_dir = crd_dir
        self.version = version
        try:
            kv.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
                        version, strict=True)
        except kv.VersionNotSupportedError:
            die("kubernetes-validate %s has no Kubernetes %s schemas"
                % (kubernetes_validate.__version__, version))
        # kubernetes-validate's choice (its own comparison): the newest
        # schemas not newer than V.
        self.schema_dir = "kubernetes-json-schema/v%s-local-strict" % [
            v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
        defs = kv.schema_contents(self.schema_dir + "/_definitions.json", version)
        quantity = defs["$defs"][QUANTITY_DEF]
        defs["$defs"][QUANTITY_DEF] = {**quantity, "format": "quantity"}
        self.registry = Resource.from_contents(defs) @ Registry()

    @functools.lru_cache(maxsize=None)
    def _schema_validator(self, path, crd):
        if not crd:
            try:
                schema = kv.schema_contents(path, self.version)
            except FileNotFoundError:
                return None
        else:
            if not os.path.exists(path):
                return None
            with open(path) as f:
                schema = json.load(f)
        return jsonschema.Draft202012Validator(schema, registry=self.registry,
                                               format_checker=FORMATS)

    def schema_path(self, api_version, kind):
        group, _, version = api_version.rpartition("/")
        if not re.fullmatch(r"[a-z0-9.-]*", group) or not re.fullmatch(r"v[0-9a-z]+", version) \
                or not re.fullmatch(r"[A-Za-z0-9]+", kind):
            return None, False
        if group in CRD_GROUPS:
            return os.path.join(self.crd_dir, group, version, kind.lower() + ".json"), True
        # kubernetes-validate's file naming (rbac.authorization.k8s.io/v1 -> rbac-v1).
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        return "%s/%s-%s.json" % (self.schema_dir, kind.lower(), api), False

    def validate(self, doc):
        """The errors of one document (empty: valid)."""
        if not isinstance(doc, dict):
            return ["not an object"]
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return ["apiVersion and kind must be strings"]
        path, crd = self.schema_path(api_version, kind)
        validator = self._schema_validator(path, crd) if path else None
        if validator is None:
            return ["no schema for apiVersion %s, kind %s" % (api_version, kind)]
        found = [leaf for e in validator.iter_errors(doc) for leaf in leaves(e)]
        errors = []
        for e in sorted(found, key=lambda e: [str(p) for p in e.absolute_path]):
            if describe(e) not in errors:
                errors.append(describe(e))
        if not crd:
            try:
                kubernetes_validate.validate(doc, self.version, strict=True)
            except kv.ValidationError as e:
                # Normally listed already: the same schema, walked in full.
                errors[:0] = [describe(x) for x in leaves(e) if describe(x) not in errors]
            except kv.SchemaNotFoundError as e:
                return [e.message]
        return errors


def leaves(error):
    """The errors to report for one of iter_errors(): an anyOf/oneOf whose
    only other branch is null (an optional field) by the errors of that
    branch, all of them."""
    if error.context and error.validator in ("anyOf", "oneOf"):
        branches = {}
        for c in error.context:
            branches.setdefault(c.relative_schema_path[0], []).append(c)
        real = [errs for i, errs in branches.items() if error.validator_value[i] != {"type": "null"}]
        if len(real) == 1:
            return [leaf for c in real[0] for leaf in leaves(c)]
    return [error]


def describe(error):
    """"/json/pointer: message"."""
    message = error.message
    if error.context:  # a real union: the reason of the branch that came closest
        best = jsonschema.exceptions.best_match(error.context)
        message += " (%s%s)" % ("".join("/" + str(p) for p in best.relative_path) + ": "
                                if best.relative_path else "", best.message)
    return "%s: %s" % ("".join("/" + str(p) for p in error.absolute_path) or "/", message)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crd-schemas", required=True)
    ap.add_argument("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION)
    ap.add_argument("file")
    opts = ap.parse_args()
    with open(opts.file) as f:
        docs = json.load(f)
    if not isinstance(docs, list) or not docs:
        die("%s: expected a non-empty JSON array" % opts.file)
    validator = Validator(opts.crd_schemas, opts.kubernetes_version)
    failed = 0
    for item in docs:
        doc = item.get("doc")
        errors = validator.validate(doc)
        d = doc if isinstance(doc, dict) else {}
        what = "%s/%s %s (%s)" % (d.get("apiVersion"), d.get("kind"),
                                  (d.get("metadata") or {}).get("name", "?"), item.get("name"))
        if errors:
            failed += 1
            print("FAIL " + what)
            for e in errors:
                print("     " + e)
        else:
            print("ok   " + what)
    print("%d valid, %d invalid" % (len(docs) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
