#!/usr/bin/env python3
"""Writes JSON schemas (draft 2020-12) of prometheus-operator's custom
resources (ServiceMonitor, PodMonitor, PrometheusRule, Probe, ... all the
kinds of the monitoring.coreos.com group) for tests/helm/k8s_validate.py.

  crd_schemas.py WHEEL OUT_DIR

WHEEL: cloudcoil-models-prometheus-operator's wheel from PyPI, pinned and
hash-checked by scripts/fetch-k8s-tools.sh (it downloads the file and runs
this). That wheel holds Python (pydantic) models that cloudcoil's code
generator made from prometheus-operator's CRDs (the openAPIV3Schema of each
version of each CRD): one class per object schema, a field per property,
with its JSON name (alias), type, enum (Literal), required-ness (no
default) and the constraints pattern, min_length, ge and le. The wheel is
only read, never installed or imported (it needs Python >= 3.14 and
pydantic): its source is parsed with the ast module and each construct is
translated to JSON Schema. Any construct this translator does not know
stops it, so nothing is silently left unchecked.

OUT_DIR gets monitoring.coreos.com/VERSION/KIND.json (lower-case kind), each
self-contained but for metadata, which refers to Kubernetes' ObjectMeta in
kubernetes-validate's schemas (https://kubernetes.io/api/_definitions.json),
and SOURCE.json (the wheel, its sha256, the kinds).

Strict as kubectl --validate=strict is: every object schema gets
additionalProperties: false (the API server prunes fields a structural
schema does not define), except maps (dict[str, X]) and free-form objects
(x-kubernetes-preserve-unknown-fields: dict[str, Any] or Any). Go (RE2)
regular expressions with a flag group in the middle, (?i)REST, become
Python's scoped (?i:REST), which means the same.
"""
import ast
import hashlib
import json
import os
import re
import sys
import zipfile

PACKAGE = "cloudcoil/models/prometheus_operator/"
GROUP = "monitoring.coreos.com"
OBJECT_META = ("https://kubernetes.io/api/_definitions.json"
               "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
SCALARS = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "Any": {},
    "dict": {"type": "object"},
    "AwareDatetime": {"type": "string", "format": "date-time"},
}


class Unsupported(Exception):
    pass


def python_regex(pattern):
    """RE2 -> Python: in RE2 a flag group (?i) not at the start applies to
    the rest of its enclosing group; Python 3.11 wants it scoped, (?i:...)."""
    closes, stack, in_class, j = {}, [], False, 0  # "(" position -> its ")"
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            j += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            stack.append(j)
        elif c == ")":
            closes[stack.pop()] = j
        j += 1
    out, pending, j = [], {}, 0  # pending: position -> ")"s to add there
    while j < len(pattern):
        m = re.match(r"\(\?([a-zA-Z]+)\)", pattern[j:])
        if m and j > 0:
            opens = [o for o, cl in closes.items() if o < j < cl]
            end = closes[max(opens)] if opens else len(pattern)
            out.append("(?%s:" % m.group(1))
            pending[end] = pending.get(end, 0) + 1
            j += len(m.group(0))
            continue
        out.append(")" * pending.pop(j, 0))
        step = 2 if pattern[j] == "\\" else 1
        out.append(pattern[j:j + step])
        j += step
    out.append(")" * pending.pop(len(pattern), 0))
    result = "".join(out)
    re.compile(result)
    return result


class Module:
    def __init__(self, name, source):
        self.name = name
        self.classes = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
        self.defs = {}

    def ref(self, cls):
        if cls not in self.defs:
            self.defs[cls] = None  # placeholder: recursive references
            self.defs[cls] = self.class_schema(self.classes[cls])
        return {"$ref": "#/$defs/" + cls}

    def class_schema(self, node):
        base = ast.unparse(node.bases[0]) if len(node.bases) == 1 else ""
        fields = [s for s in node.body if isinstance(s, ast.AnnAssign)
                  and not ast.unparse(s.annotation).startswith("ClassVar")]
        if base.startswith("RootModel["):
            if len(fields) != 1 or fields[0].target.id != "root":
                raise Unsupported("%s: a RootModel without one root field" % node.name)
            return self.field(fields[0])[1]
        if base not in ("BaseModel", "Resource"):
            raise Unsupported("%s: base class %s" % (node.name, base))
        props, required = {}, []
        for f in fields:
            key, schema = self.field(f)
            if key in props:
                raise Unsupported("%s: two fields named %s" % (node.name, key))
            props[key] = schema
            if f.value is None:
                required.append(key)
            elif not isinstance(f.value, ast.Constant):
                raise Unsupported("%s.%s: default %s" % (node.name, f.target.id, ast.unparse(f.value)))
        out = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = required
        return out

    def field(self, f):
        key = f.target.id
        ann = f.annotation
        if isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "Annotated":
            typ, *extras = ann.slice.elts
            schema = self.annotation(typ)
            for e in extras:
                if not (isinstance(e, ast.Call) and ast.unparse(e.func) == "Field") or e.args:
                    raise Unsupported("field %s: %s" % (key, ast.unparse(e)))
                for kw in e.keywords:
                    v = ast.literal_eval(kw.value)
                    if kw.arg == "alias":
                        key = v
                    elif kw.arg == "pattern":
                        schema["pattern"] = python_regex(v)
                    elif kw.arg == "min_length":  # pydantic: strings and lists
                        schema.update(minLength=v, minItems=v)
                    elif kw.arg == "max_length":
                        schema.update(maxLength=v, maxItems=v)
                    elif kw.arg in ("ge", "le", "gt", "lt"):
                        schema[{"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum",
                                "lt": "exclusiveMaximum"}[kw.arg]] = v
                    elif kw.arg != "description":
                        raise Unsupported("field %s: Field(%s=...)" % (key, kw.arg))
            return key, schema
        return key, self.annotation(ann)

    def annotation(self, node):
        """The JSON schema of a type annotation (a fresh dict)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # forward reference
            return self.annotation(ast.parse(node.value, mode="eval").body)
        if isinstance(node, ast.Constant) and node.value is None:
            return {"type": "null"}
        if isinstance(node, ast.Name):
            if node.id in SCALARS:
                return dict(SCALARS[node.id])
            if node.id == "ObjectMeta":
                return {"$ref": OBJECT_META}
            if node.id in self.classes:
                return self.ref(node.id)
            raise Unsupported("type %s" % node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            members = []
            for side in (node.left, node.right):
                s = self.annotation(side)
                members += s["anyOf"] if list(s) == ["anyOf"] else [s]
            return {"anyOf": members}
        if isinstance(node, ast.Subscript):
            outer = ast.unparse(node.value)
            args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if outer == "list" and len(args) == 1:
                return {"type": "array", "items": self.annotation(args[0])}
            if outer == "dict" and len(args) == 2 and ast.unparse(args[0]) == "str":
                return {"type": "object", "additionalProperties": self.annotation(args[1])}
            if outer == "Literal":
                values = [ast.literal_eval(a) for a in args]
                if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                    raise Unsupported("Literal%s" % values)
                return {"enum": values}
        raise Unsupported("annotation %s" % ast.unparse(node))

    def resources(self):
        return [n for n, c in self.classes.items()
                if len(c.bases) == 1 and ast.unparse(c.bases[0]) == "Resource"]

    def kind_schema(self, cls):
        self.defs = {}
        top = self.class_schema(self.classes[cls])
        api = top["properties"]["apiVersion"]
        kind = top["properties"]["kind"]
        if api != {"enum": ["%s/%s" % (GROUP, self.name)]} or kind != {"enum": [cls]}:
            raise Unsupported("%s: apiVersion %s, kind %s" % (cls, api, kind))
        # Every manifest names both (the models default them).
        top["required"] = sorted(set(top.get("required", [])) | {"apiVersion", "kind"})
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://clipserve.invalid/crd-schemas/%s/%s/%s.json" % (GROUP, self.name, cls.lower()),
            "title": "%s/%s %s" % (GROUP, self.name, cls),
            **top,
            "$defs": dict(sorted(self.defs.items())),
        }


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: crd_schemas.py WHEEL OUT_DIR")
    wheel, out_dir = sys.argv[1:]
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    written = {}
    with zipfile.ZipFile(wheel) as z:
        versions = sorted(n[len(PACKAGE):-3] for n in z.namelist()
                          if re.fullmatch(re.escape(PACKAGE) + r"v[0-9]+(alpha|beta)?[0-9]*\.py", n))
        if not versions:
            sys.exit("crd_schemas: no %sv*.py in %s" % (PACKAGE, wheel))
        for version in versions:
            module = Module(version, z.read(PACKAGE + version + ".py").decode())
            os.makedirs(os.path.join(out_dir, GROUP, version), exist_ok=True)
            for cls in sorted(module.resources()):
                try:
                    schema = module.kind_schema(cls)
                except Unsupported as e:
                    sys.exit("crd_schemas: %s %s: %s" % (version, cls, e))
                path = os.path.join(out_dir, GROUP, version, cls.lower() + ".json")
                with open(path, "w") as f:
                    json.dump(schema, f, indent=1, sort_keys=False)
                written.setdefault(version, []).append(cls)
    with open(os.path.join(out_dir, "SOURCE.json"), "w") as f:
        json.dump({"wheel": os.path.basename(wheel), "sha256": digest,
                   "generator": os.path.basename(__file__), "kinds": written}, f, indent=1)
    print("crd_schemas: %s" % ", ".join("%s/%s: %s" % (GROUP, v, " ".join(k))
                                         for v, k in written.items()))


if __name__ == "__main__":
    main()
