#!/usr/bin/env python3
"""The offline validator must reject what the API server would reject.

Starts from the chart's real rendering (defaults plus autoscaling, so that
the HPA, ServiceMonitor and PrometheusRule are there), checks that it
validates, then breaks one thing at a time and expects that document, and
only it, to fail with the right message. Also the hand-written
testdata/broken-deployment.yaml (three faults, all reported).
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


# name -> (mutation, text expected in the validator's output)
MUTATIONS = {
    "replicas as a string": (
        lambda d: helmlib.one(d, "Deployment")["spec"].update(replicas="2"),
        "/spec/replicas must be integer"),
    "misspelt securityContext field": (
        lambda d: container(d)["securityContext"].update(readOnlyRootFilesytem=True),
        'unknown field "readOnlyRootFilesytem"'),
    "misspelt field at the spec level": (
        lambda d: helmlib.one(d, "Deployment")["spec"].update(replica=2),
        'unknown field "replica"'),
    "gRPC probe port by name": (
        lambda d: container(d)["readinessProbe"]["grpc"].update(port="grpc"),
        "/readinessProbe/grpc/port must be integer"),
    "container without a name": (
        lambda d: container(d).pop("name"),
        "containers/0 must have required property name"),
    "bad memory quantity": (
        lambda d: container(d)["resources"]["limits"].update(memory="8 gigs"),
        'must match format "quantity"'),
    "Service port missing": (
        lambda d: helmlib.one(d, "Service", "-headless")["spec"]["ports"][0].pop("port"),
        "/spec/ports/0 must have required property port"),
    "HPA without maxReplicas": (
        lambda d: hpa(d)["spec"].pop("maxReplicas"),
        "/spec must have required property maxReplicas"),
    "HPA metric target misspelt": (
        lambda d: hpa(d)["spec"]["metrics"][0]["pods"]["target"].update(averagevalue="1"),
        'unknown field "averagevalue"'),
    "PrometheusRule rule misspelt (CRD schema)": (
        lambda d: helmlib.one(d, "PrometheusRule")["spec"]["groups"][1]["rules"][0].update(
            alrt=helmlib.one(d, "PrometheusRule")["spec"]["groups"][1]["rules"][0].pop("alert")),
        'unknown field "alrt"'),
    "ServiceMonitor interval not a duration (CRD schema)": (
        lambda d: helmlib.one(d, "ServiceMonitor")["spec"]["endpoints"][0].update(interval="5 seconds"),
        "/spec/endpoints/0/interval must match pattern"),
    "unknown apiVersion/kind": (
        lambda d: helmlib.one(d, "PodDisruptionBudget").update(apiVersion="policy/v1beta9"),
        "no schema for apiVersion policy/v1beta9"),
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
        # A schema error stops the walk; fix it and the other faults show.
        self.assertIn("/spec/replicas must be integer", out)
        docs[0]["spec"]["replicas"] = 2
        rc, out = helmlib.validate(docs)
        self.assertIn("/readinessProbe/grpc/port must be integer", out)
        docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 8001
        rc, out = helmlib.validate(docs)
        self.assertEqual(rc, 1, out)
        self.assertIn('unknown field "readOnlyRootFilesytem"', out)

    def test_empty_input_is_an_error(self):
        rc, out = helmlib.validate([])
        self.assertEqual(rc, 2, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
