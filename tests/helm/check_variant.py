#!/usr/bin/env python3
"""One values variant of the chart (default, gpu, autoscaling, tls):

  check_variant.py lint VARIANT      helm lint --strict (values.schema.json
                                     included) with the variant's values
  check_variant.py validate VARIANT  helm template, then every rendered
                                     document (test hooks too) against the
                                     Kubernetes and prometheus-operator
                                     schemas, unknown fields included
                                     (k8s_validate.py: kubernetes-validate
                                     --strict and the CRD schemas)
"""
import sys

import helmlib


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("lint", "validate") \
            or sys.argv[2] not in helmlib.VARIANTS:
        sys.exit("usage: check_variant.py lint|validate %s" % "|".join(helmlib.VARIANTS))
    helmlib.check_tools()
    what, variant = sys.argv[1:]
    values = [helmlib.VARIANTS[variant]]
    if what == "lint":
        p = helmlib.helm("lint", "--strict", helmlib.CHART,
                         *helmlib.values_args(values), check=False)
        print(p.stdout + p.stderr)
        if p.returncode != 0 or "0 chart(s) failed" not in p.stdout + p.stderr:
            sys.exit("FAIL: helm lint --strict (%s) exited %d" % (variant, p.returncode))
        print("PASS: helm lint --strict, %s values" % variant)
        return
    docs = helmlib.render(values)
    kinds = sorted("%s/%s" % (d["apiVersion"], d["kind"]) for d in docs)
    print("%d documents: %s" % (len(docs), ", ".join(kinds)))
    rc, out = helmlib.validate(docs, label=variant)
    print(out)
    if rc != 0:
        sys.exit("FAIL: rendered manifests (%s values) do not validate" % variant)
    print("PASS: %d documents valid, %s values" % (len(docs), variant))


if __name__ == "__main__":
    main()
