#!/usr/bin/env python3
"""The offline validator must reject what the API server would reject.

Starts from the chart's real rendering (defaults plus autoscaling, so that
the HPA, ServiceMonitor and PrometheusRule are there), checks that it
validates, then breaks one thing at a time and expects that document, and
only it, to fail with the right message: built-in kinds (kubernetes-validate,
strict, plus quantities and int32) and prometheus-operator's custom resources
(the CRD schemas). Also the hand-written testdata/broken-deployment.yaml
(three faults, all reported; valid once fixed) and
testdata/broken-monitoring.yaml (a ServiceMonitor and a PrometheusRule, each
with several faults, all reported).
"""
import copy
import os
import unittest

import yaml

import helmlib


def container(docs):
    return helmlib.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def hpa(docs):
    return helmlib.one(docs, "HorizontalPodAutoscaler")


def servicemonitor(docs):
    return helmlib.one(docs, "ServiceMonitor")


def rule_group(docs, i):
    return helmlib.one(docs, "PrometheusRule")["spec"]["groups"][i]


# name -> (mutation, text expected in the validator's output). Built-in kinds
# are checked by kubernetes-validate (strict), monitoring.coreos.com kinds by
# the prometheus-operator CRD schemas (crd_schemas.py).
MUTATIONS = {
    "replicas as a string": (
        lambda d: helmlib.one(d, "Deployment")["spec"].update(replicas="2"),
        "/spec/replicas: '2' is not of type 'integer'"),
    "replicas beyond int32": (
        lambda d: helmlib.one(d, "Deployment")["spec"].update(replicas=2**31),
        "/spec/replicas: 2147483648 is not a 'int32'"),
    "misspelt securityContext field": (
        lambda d: container(d)["securityContext"].update(readOnlyRootFilesytem=True),
        "/securityContext: Additional properties are not allowed "
        "('readOnlyRootFilesytem' was unexpected)"),
    "misspelt field at the spec level": (
        lambda d: helmlib.one(d, "Deployment")["spec"].update(replica=2),
        "/spec: Additional properties are not allowed ('replica' was unexpected)"),
    "gRPC probe port by name": (
        lambda d: container(d)["readinessProbe"]["grpc"].update(port="grpc"),
        "/readinessProbe/grpc/port: 'grpc' is not of type 'integer'"),
    "container without a name": (
        lambda d: container(d).pop("name"),
        "/containers/0: 'name' is a required property"),
    "bad memory quantity": (
        lambda d: container(d)["resources"]["limits"].update(memory="8 gigs"),
        "/resources/limits/memory: '8 gigs' is not a 'quantity'"),
    "Service port missing": (
        lambda d: helmlib.one(d, "Service", "-headless")["spec"]["ports"][0].pop("port"),
        "/spec/ports/0: 'port' is a required property"),
    "HPA without maxReplicas": (
        lambda d: hpa(d)["spec"].pop("maxReplicas"),
        "/spec: 'maxReplicas' is a required property"),
    "HPA metric target misspelt": (
        lambda d: hpa(d)["spec"]["metrics"][0]["pods"]["target"].update(averagevalue="1"),
        "'averagevalue' was unexpected"),
    "Deployment under another group": (
        lambda d: helmlib.one(d, "Deployment").update(apiVersion="apps.example.com/v1"),
        "/apiVersion: 'apps.example.com/v1' is not one of ['apps/v1']"),
    "unknown apiVersion/kind": (
        lambda d: helmlib.one(d, "PodDisruptionBudget").update(apiVersion="policy/v1beta9"),
        "no schema for apiVersion policy/v1beta9, kind PodDisruptionBudget"),
    "kind of an unknown group": (
        lambda d: helmlib.one(d, "ConfigMap", "-config").update(apiVersion="example.com/v1"),
        "no schema for apiVersion example.com/v1, kind ConfigMap"),
    # The CRD schemas.
    "PrometheusRule rule misspelt (CRD schema)": (
        lambda d: rule_group(d, 1)["rules"][0].update(alrt=rule_group(d, 1)["rules"][0].pop("alert")),
        "/spec/groups/1/rules/0: Additional properties are not allowed ('alrt' was unexpected)"),
    "PrometheusRule for: not a duration (CRD schema)": (
        lambda d: rule_group(d, 1)["rules"][0].update({"for": "5 minutes"}),
        "/spec/groups/1/rules/0/for: '5 minutes' does not match"),
    "PrometheusRule group without a name (CRD schema)": (
        lambda d: rule_group(d, 0).pop("name"),
        "/spec/groups/0: 'name' is a required property"),
    "PrometheusRule spec field misspelt (CRD schema)": (
        lambda d: helmlib.one(d, "PrometheusRule")["spec"].update(
            group=helmlib.one(d, "PrometheusRule")["spec"].pop("groups")),
        "/spec: Additional properties are not allowed ('group' was unexpected)"),
    "ServiceMonitor interval not a duration (CRD schema)": (
        lambda d: servicemonitor(d)["spec"]["endpoints"][0].update(interval="5 seconds"),
        "/spec/endpoints/0/interval: '5 seconds' does not match"),
    "ServiceMonitor scheme not in the enum (CRD schema)": (
        lambda d: servicemonitor(d)["spec"]["endpoints"][0].update(scheme="ftp"),
        "/spec/endpoints/0/scheme: 'ftp' is not one of ['http', 'https'"),
    "ServiceMonitor without selector (CRD schema)": (
        lambda d: servicemonitor(d)["spec"].pop("selector"),
        "/spec: 'selector' is a required property"),
    "ServiceMonitor sampleLimit negative (CRD schema)": (
        lambda d: servicemonitor(d)["spec"].update(sampleLimit=-1),
        "/spec/sampleLimit: -1 is less than the minimum of 0"),
    "ServiceMonitor metadata misspelt (CRD, ObjectMeta)": (
        lambda d: servicemonitor(d)["metadata"].update(label={"a": "b"}),
        "/metadata: Additional properties are not allowed ('label' was unexpected)"),
    "ServiceMonitor kind misspelt": (
        lambda d: servicemonitor(d).update(kind="ServiceMonitr"),
        "no schema for apiVersion monitoring.coreos.com/v1, kind ServiceMonitr"),
}


def validate_each(docs, names):
    """Validates docs in one run; {name: (valid, error text)}."""
    _, out = helmlib.validate(docs, names=names)
    results, current = {}, None
    for line in out.splitlines():
        for n in names:
            if line.startswith(("ok ", "FAIL ")) and line.endswith("(%s)" % n):
                current = n
                results[n] = (line.startswith("ok "), "")
        if line.startswith("     ") and current:
            results[current] = (results[current][0], results[current][1] + line + "\n")
    missing = set(names) - set(results)
    if missing:
        raise AssertionError("no result for %s:\n%s" % (missing, out))
    return results


class ValidatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        helmlib.check_tools()
        cls.docs = helmlib.render([helmlib.VARIANTS["autoscaling"]])

    def test_chart_rendering_is_valid(self):
        rc, out = helmlib.validate(self.docs)
        self.assertEqual(rc, 0, out)

    def test_each_fault_is_rejected(self):
        # One validator run: each mutation breaks one document of its own
        # copy; that document, and no other, must fail.
        batch = []
        for name, (mutate, expected) in MUTATIONS.items():
            docs = copy.deepcopy(self.docs)
            mutate(docs)
            changed = [d for d, o in zip(docs, self.docs) if d != o]
            self.assertEqual(len(changed), 1, name)
            batch.append(changed[0])
        results = validate_each(batch, list(MUTATIONS))
        for name, (_, expected) in MUTATIONS.items():
            with self.subTest(name):
                ok, errors = results[name]
                self.assertFalse(ok, "accepted: %s" % name)
                self.assertIn(expected, errors)

    def test_broken_manifest_file_is_rejected(self):
        with open(os.path.join(helmlib.HERE, "testdata", "broken-deployment.yaml")) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        rc, out = helmlib.validate(docs, label="broken-deployment.yaml")
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL apps/v1/Deployment broken", out)
        # Every fault, in one run.
        for expected in ("/spec/replicas: '2' is not of type 'integer'",
                         "/readinessProbe/grpc/port: 'grpc' is not of type 'integer'",
                         "'readOnlyRootFilesytem' was unexpected"):
            self.assertIn(expected, out)
        # Fixed, it validates: the three were the only faults.
        spec = docs[0]["spec"]
        spec["replicas"] = 2
        container = spec["template"]["spec"]["containers"][0]
        container["readinessProbe"]["grpc"]["port"] = 8001
        container["securityContext"] = {"readOnlyRootFilesystem": True}
        rc, out = helmlib.validate(docs)
        self.assertEqual(rc, 0, out)

    def test_broken_custom_resources_are_rejected(self):
        with open(os.path.join(helmlib.HERE, "testdata", "broken-monitoring.yaml")) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        names = ["%s #%d" % (d["kind"], i) for i, d in enumerate(docs)]
        results = validate_each(docs, names)
        expected = {
            "ServiceMonitor #0": [
                "/spec/endpoints/0/interval: '30 seconds' does not match",
                "/spec/endpoints/0/scheme: 'tcp' is not one of",
                "/spec/endpoints/0: Additional properties are not allowed ('portt' was unexpected)",
                "/spec: 'selector' is a required property"],
            "PrometheusRule #1": [
                "/spec/groups/0: 'name' is a required property",
                "/spec/groups/0/rules/0: Additional properties are not allowed ('expression' was unexpected)",
                "/spec/groups/0/rules/0: 'expr' is a required property",
                "/spec/groups/0/rules/0/for: '10 min' does not match"],
        }
        self.assertEqual(set(results), set(expected))
        for name, errors in expected.items():
            ok, out = results[name]
            self.assertFalse(ok, name)
            for e in errors:
                self.assertIn(e, out, name)

    def test_empty_input_is_an_error(self):
        rc, out = helmlib.validate([])
        self.assertEqual(rc, 2, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
