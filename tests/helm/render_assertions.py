#!/usr/bin/env python3
"""Assertions on the chart's rendered manifests (helm template), by topic.

  render_assertions.py              every test
  render_assertions.py DrainTest    one class (ctest runs one per test)

Each test renders the chart with the values it is about and checks what
would break a deployment if it changed: labels, the image pin, autoscaling
and replicas, drain timing, connection ageing, probes, security context,
GPUs, the config checksum, model repository sources, Services, PDB,
monitoring objects, the helm test pod, the values schema, NOTES. A failure
names the value or field at fault.
"""
import hashlib
import json
import os
import re
import unittest

import yaml

import helmlib

REPO = helmlib.REPO
GPU = helmlib.VARIANTS["gpu"]
AUTOSCALING = helmlib.VARIANTS["autoscaling"]
TLS = helmlib.VARIANTS["tls"]

with open(os.path.join(helmlib.CHART, "Chart.yaml")) as _f:
    CHART_META = yaml.safe_load(_f)
with open(os.path.join(helmlib.CHART, "values.yaml")) as _f:
    DEFAULTS = yaml.safe_load(_f)
APP_VERSION = str(CHART_META["appVersion"])

# Every resource's labels (app.kubernetes.io/* and helm.sh/chart).
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
          "app.kubernetes.io/component", "app.kubernetes.io/part-of",
          "app.kubernetes.io/managed-by", "helm.sh/chart")

_cache = {}


def render(*values_files, sets=(), release="clipserve"):
    key = (values_files, tuple(sets), release)
    if key not in _cache:
        _cache[key] = helmlib.render(list(values_files), list(sets), release=release)
    return _cache[key]


def fails(*values_files, sets=()):
    """stderr of a `helm template` that must fail."""
    p = helmlib.template(list(values_files), list(sets), check=False)
    if p.returncode == 0:
        raise AssertionError("helm template with %s %s rendered; it must fail"
                             % (list(values_files), list(sets)))
    return p.stderr


def deployment(docs):
    return helmlib.one(docs, "Deployment")


def pod_spec(docs):
    return deployment(docs)["spec"]["template"]["spec"]


def server(docs):
    (c,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "clipserve"]
    return c


def server_flags(docs):
    """The server's flags, {name: value}, with $(VAR) resolved from the
    ConfigMap the container's envFrom names (as the kubelet would)."""
    c = server(docs)
    (ref,) = [e["configMapRef"]["name"] for e in c["envFrom"]]
    data = helmlib.one(docs, "ConfigMap", "-config")
    assert data["metadata"]["name"] == ref, (ref, data["metadata"]["name"])
    env = dict(data["data"])
    self_env = {e["name"]: e.get("value") for e in c.get("env", [])}
    flags = {}
    for arg in c["args"]:
        m = re.fullmatch(r"--([a-z0-9-]+)=(.*)", arg)
        assert m, "server arg %r is not --flag=value" % arg

        def resolve(var):
            name = var.group(1)
            assert name in env or name in self_env, "$(%s) is defined nowhere" % name
            return env.get(name, self_env.get(name))
        flags[m.group(1)] = re.sub(r"\$\(([A-Z0-9_]+)\)", resolve, m.group(2))
    return flags


def all_containers(docs):
    """(document, container) for every container and init container."""
    out = []
    for d in docs:
        spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else \
            d["spec"] if d["kind"] == "Pod" else None
        if spec:
            for c in spec.get("initContainers", []) + spec["containers"]:
                out.append((d, c))
    return out


def checksum(docs):
    return deployment(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


class ChartMetadataTest(unittest.TestCase):
    def test_chart_yaml(self):
        self.assertEqual(CHART_META["apiVersion"], "v2")
        self.assertEqual(CHART_META["name"], "clipserve")
        self.assertRegex(str(CHART_META["version"]), r"^\d+\.\d+\.\d+$")

    def test_app_version_is_the_project_version(self):
        with open(os.path.join(REPO, "CMakeLists.txt")) as f:
            m = re.search(r"project\(clipserve VERSION ([0-9.]+)", f.read())
        self.assertEqual(APP_VERSION, m.group(1),
                         "Chart.yaml appVersion must follow CMakeLists.txt's project version")

    def test_one_resource_per_template(self):
        tdir = os.path.join(helmlib.CHART, "templates")
        for root, _, files in os.walk(tdir):
            for name in files:
                if name.endswith(".yaml"):
                    with open(os.path.join(root, name)) as f:
                        text = f.read()
                    self.assertEqual(len(re.findall(r"^kind: ", text, re.M)), 1, name)
                    self.assertNotIn("\n---", text, name)


class LabelsTest(unittest.TestCase):
    def test_every_resource_has_the_labels(self):
        for values in (None, GPU, AUTOSCALING, TLS):
            docs = render(values)
            for d in docs:
                labels = d["metadata"].get("labels", {})
                for key in LABELS:
                    self.assertIn(key, labels, "%s %s (%s)" % (d["kind"], d["metadata"]["name"], values))
                self.assertEqual(labels["app.kubernetes.io/name"], "clipserve")
                self.assertEqual(labels["app.kubernetes.io/instance"], "clipserve")
                self.assertEqual(labels["app.kubernetes.io/part-of"], "clipserve")
                self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")
                self.assertEqual(labels["app.kubernetes.io/version"], APP_VERSION)
                self.assertEqual(labels["helm.sh/chart"], "clipserve-%s" % CHART_META["version"])
                self.assertEqual(labels["app.kubernetes.io/component"],
                                 "test" if d["kind"] == "Pod" else "server")

    def test_pod_template_labels_and_selectors(self):
        docs = render(AUTOSCALING)
        d = deployment(docs)
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        for key in LABELS:
            self.assertIn(key, pod_labels)
        selector = d["spec"]["selector"]["matchLabels"]
        # Immutable selector: only the stable labels (no version, no chart).
        self.assertEqual(set(selector), {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                         "app.kubernetes.io/component"})
        self.assertLessEqual(selector.items(), pod_labels.items())
        for svc in helmlib.find(docs, "Service"):
            self.assertEqual(svc["spec"]["selector"], selector, svc["metadata"]["name"])
        self.assertEqual(helmlib.one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                         selector)
        self.assertEqual(helmlib.one(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
                         selector)
        # The helm test pod must not be selected by the Services.
        test_pod = helmlib.one(docs, "Pod")
        self.assertFalse(selector.items() <= test_pod["metadata"]["labels"].items())

    def test_release_name_in_resource_names(self):
        docs = render(sets=[], release="vision")
        self.assertEqual(deployment(docs)["metadata"]["name"], "vision-clipserve")
        docs = render(sets=[], release="clipserve-prod")
        self.assertEqual(deployment(docs)["metadata"]["name"], "clipserve-prod")
        self.assertEqual(helmlib.one(docs, "Service", "-headless")["metadata"]["name"],
                         "clipserve-prod-headless")


class ImageTest(unittest.TestCase):
    def test_default_tag_is_app_version(self):
        image = server(render())["image"]
        self.assertEqual(image, "%s:%s" % (DEFAULTS["image"]["repository"], APP_VERSION))
        self.assertEqual(DEFAULTS["image"]["tag"], "")

    def test_no_latest_anywhere(self):
        for values in (None, GPU, AUTOSCALING, TLS):
            for _, c in all_containers(render(values)):
                self.assertNotRegex(c["image"], r":latest$")
                self.assertRegex(c["image"], r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", c["image"])
        self.assertIn("'not' failed", fails(sets=["image.tag=latest"]))

    def test_tag_and_digest(self):
        self.assertTrue(server(render(sets=["image.tag=1.2.3"]))["image"].endswith(":1.2.3"))
        digest = "sha256:" + "ab" * 32
        self.assertTrue(server(render(sets=["image.digest=" + digest]))["image"].endswith("@" + digest))
        # The version label follows the tag that runs.
        self.assertEqual(deployment(render(sets=["image.tag=1.2.3"]))["metadata"]["labels"]
                         ["app.kubernetes.io/version"], "1.2.3")


class AutoscalingTest(unittest.TestCase):
    def test_replicas_only_without_hpa(self):
        docs = render()
        self.assertEqual(deployment(docs)["spec"]["replicas"], DEFAULTS["replicaCount"])
        self.assertEqual(helmlib.find(docs, "HorizontalPodAutoscaler"), [])
        for values in ((AUTOSCALING,), (GPU, AUTOSCALING)):
            docs = render(*values)
            self.assertNotIn("replicas", deployment(docs)["spec"],
                             "with an HPA the Deployment must leave replicas alone")
        docs = render(sets=["autoscaling.enabled=true"])
        self.assertNotIn("replicas", deployment(docs)["spec"])

    def test_hpa(self):
        docs = render(GPU, AUTOSCALING)
        hpa = helmlib.one(docs, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((ref["apiVersion"], ref["kind"], ref["name"]),
                         ("apps/v1", "Deployment", deployment(docs)["metadata"]["name"]))
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        metrics = hpa["spec"]["metrics"]
        pods = [m for m in metrics if m["type"] == "Pods"]
        self.assertEqual(len(pods), 1)
        self.assertEqual(pods[0]["pods"]["metric"]["name"], "clipserve_queue_seconds_per_request")
        self.assertEqual(pods[0]["pods"]["target"], {"type": "AverageValue", "averageValue": "100m"})
        cpu = [m for m in metrics if m["type"] == "Resource"]
        self.assertEqual(cpu[0]["resource"]["name"], "cpu")
        self.assertEqual(cpu[0]["resource"]["target"]["type"], "Utilization")
        # CPU utilisation is relative to the request: there must be one.
        self.assertIn("cpu", server(docs)["resources"]["requests"])

    def test_hpa_behavior(self):
        b = helmlib.one(render(AUTOSCALING), "HorizontalPodAutoscaler")["spec"]["behavior"]
        up, down = b["scaleUp"], b["scaleDown"]
        self.assertEqual(up["stabilizationWindowSeconds"], 0)
        self.assertEqual(up["selectPolicy"], "Max")
        kinds = {p["type"]: p for p in up["policies"]}
        self.assertEqual(kinds["Percent"]["value"], 100)
        self.assertEqual(kinds["Pods"]["value"], 4)
        for p in up["policies"]:
            self.assertTrue(15 <= p["periodSeconds"] <= 30, p)
        self.assertGreaterEqual(down["stabilizationWindowSeconds"], 300)
        for p in down["policies"]:
            if p["type"] == "Percent":
                self.assertLessEqual(p["value"], 20)
                self.assertGreaterEqual(p["periodSeconds"], 60)
        # The defaults behave the same as the example.
        default_b = helmlib.one(render(sets=["autoscaling.enabled=true"]),
                                "HorizontalPodAutoscaler")["spec"]["behavior"]
        self.assertEqual(default_b, b)

    def test_target_and_metrics_are_configurable(self):
        hpa = helmlib.one(render(sets=["autoscaling.enabled=true",
                                       "autoscaling.queueTime.targetAverageValue=50m",
                                       "autoscaling.cpu.enabled=false"]),
                          "HorizontalPodAutoscaler")
        self.assertEqual([m["type"] for m in hpa["spec"]["metrics"]], ["Pods"])
        self.assertEqual(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"], "50m")
        self.assertIn("at least one metric", fails(sets=[
            "autoscaling.enabled=true", "autoscaling.queueTime.enabled=false",
            "autoscaling.cpu.enabled=false"]))
        self.assertIn("must not exceed", fails(sets=[
            "autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"]))

    def test_adapter_metric_name_matches(self):
        """deploy/prometheus-adapter/values.yaml must expose the metric the HPA reads."""
        path = os.path.join(REPO, "deploy", "prometheus-adapter", "values.yaml")
        name = DEFAULTS["autoscaling"]["queueTime"]["metricName"]
        if not os.path.exists(path):
            self.fail("%s is missing: prometheus-adapter's rule for %s" % (path, name))
        with open(path) as f:
            rules = yaml.safe_load(f)["rules"]["custom"]
        (rule,) = [r for r in rules if r["name"]["as"] == name]
        # A Pods metric: the adapter must map series to pods.
        self.assertEqual(rule["resources"]["overrides"]["pod"], {"resource": "pod"})
        self.assertIn("clipserve_queue_duration_seconds", rule["metricsQuery"])


class DrainTest(unittest.TestCase):
    def check(self, docs, pre, queue, timeout):
        spec = pod_spec(docs)
        tgps = spec["terminationGracePeriodSeconds"]
        self.assertGreaterEqual(tgps, pre + queue + timeout,
                                "terminationGracePeriodSeconds must cover preStop + queue + drain")
        self.assertEqual(server(docs)["lifecycle"]["preStop"], {"sleep": {"seconds": pre}})
        self.assertEqual(server_flags(docs)["drain-timeout-seconds"], str(timeout))
        return tgps

    def test_defaults(self):
        d = DEFAULTS["drain"]
        tgps = self.check(render(), d["preStopSleepSeconds"], d["queueDrainSeconds"],
                          d["timeoutSeconds"])
        self.assertEqual(tgps, d["preStopSleepSeconds"] + d["queueDrainSeconds"] +
                         d["timeoutSeconds"] + 5)

    def test_values_flow_to_server_and_pod(self):
        docs = render(sets=["drain.preStopSleepSeconds=10", "drain.timeoutSeconds=120",
                            "drain.queueDrainSeconds=0"])
        self.assertEqual(self.check(docs, 10, 0, 120), 135)
        docs = render(sets=["drain.terminationGracePeriodSeconds=600"])
        self.assertEqual(self.check(docs, 5, 20, 30), 600)

    def test_too_short_grace_period_fails(self):
        err = fails(sets=["drain.terminationGracePeriodSeconds=40"])
        self.assertIn("drain.terminationGracePeriodSeconds (40) must be at least", err)
        self.assertIn("= 55", err)
        fails(sets=["drain.terminationGracePeriodSeconds=54"])
        render(sets=["drain.terminationGracePeriodSeconds=55"])


class ConnectionTest(unittest.TestCase):
    """Connection ageing and keepalive (docs/deploy.md): flags from
    server.connection, defaults suited to autoscaling."""

    FLAGS = {"maxAgeSeconds": "grpc-max-connection-age",
             "maxAgeGraceSeconds": "grpc-max-connection-age-grace",
             "keepaliveTimeSeconds": "grpc-keepalive-time",
             "keepaliveTimeoutSeconds": "grpc-keepalive-timeout",
             "keepaliveMinPingIntervalSeconds": "grpc-keepalive-min-ping-interval",
             "keepalivePermitWithoutCalls": "grpc-keepalive-permit-without-calls"}

    def test_defaults(self):
        flags = server_flags(render())
        # Age 120 s, grace unlimited (0: camera streams are not cut),
        # keepalive 60 s / 20 s, pings accepted every 10 s, also idle.
        want = {"grpc-max-connection-age": "120", "grpc-max-connection-age-grace": "0",
                "grpc-keepalive-time": "60", "grpc-keepalive-timeout": "20",
                "grpc-keepalive-min-ping-interval": "10",
                "grpc-keepalive-permit-without-calls": "true"}
        self.assertEqual({k: flags.get(k) for k in want}, want)
        d = DEFAULTS["server"]["connection"]
        self.assertEqual(set(d), set(self.FLAGS))
        for key, flag in self.FLAGS.items():
            self.assertEqual(flags[flag], str(d[key]).lower(), key)

    def test_values_flow_to_the_flags(self):
        docs = render(sets=["server.connection.maxAgeSeconds=30",
                            "server.connection.maxAgeGraceSeconds=600",
                            "server.connection.keepaliveTimeSeconds=0",
                            "server.connection.keepaliveTimeoutSeconds=5",
                            "server.connection.keepaliveMinPingIntervalSeconds=1",
                            "server.connection.keepalivePermitWithoutCalls=false"])
        flags = server_flags(docs)
        self.assertEqual([flags[f] for f in self.FLAGS.values()],
                         ["30", "600", "0", "5", "1", "false"])
        self.assertNotEqual(checksum(docs), checksum(render()))

    def test_not_through_extra_flags_and_typed(self):
        self.assertIn("the chart sets --grpc-max-connection-age itself",
                      fails(sets=["server.extraFlags.grpc-max-connection-age=5"]))
        for bad in ("server.connection.maxAgeSeconds=-1", "server.connection.maxAgeSeconds=2m",
                    "server.connection.keepaliveTimeoutSeconds=0",
                    "server.connection.keepalivePermitWithoutCalls=maybe",
                    "server.connection.maxAge=1"):
            with self.subTest(bad):
                fails(sets=[bad])


class ProbesTest(unittest.TestCase):
    def test_grpc_probes(self):
        for values in (None, GPU, AUTOSCALING):
            c = server(render(values))
            port = [p for p in c["ports"] if p["name"] == "grpc"][0]["containerPort"]
            self.assertEqual(port, 8001)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                self.assertEqual(c[probe]["grpc"], {"port": 8001, "service": ""}, probe)
                self.assertNotIn("exec", c[probe])
            s = c["startupProbe"]
            self.assertGreaterEqual(s["periodSeconds"] * s["failureThreshold"], 600,
                                    "the startup probe must allow 10 min of model loading")

    def test_probe_port_follows_grpc_port(self):
        c = server(render(sets=["server.grpcPort=9001"]))
        self.assertEqual(c["readinessProbe"]["grpc"]["port"], 9001)
        self.assertEqual(server_flags(render(sets=["server.grpcPort=9001"]))["grpc-port"], "9001")

    def test_tls_uses_exec_probes_with_the_certificates(self):
        docs = render(TLS)
        c = server(docs)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertNotIn("grpc", c[probe], "gRPC probes cannot speak TLS")
            cmd = c[probe]["exec"]["command"]
            self.assertEqual(cmd[0], "clipserve-client")
            self.assertEqual(cmd[-1], "health")
            args = dict(zip(cmd[1:-1:2], cmd[2:-1:2]))
            self.assertEqual(args["--server"], "localhost:8001")
            self.assertEqual(args["--ssl-ca"], "/etc/clipserve/tls/ca.crt")
            self.assertEqual(args["--ssl-cert"], "/etc/clipserve/tls/tls.crt")
            self.assertEqual(args["--ssl-key"], "/etc/clipserve/tls/tls.key")
        flags = server_flags(docs)
        self.assertEqual(flags["grpc-use-ssl"], "true")
        self.assertEqual(flags["grpc-server-cert"], "/etc/clipserve/tls/tls.crt")
        self.assertEqual(flags["grpc-server-key"], "/etc/clipserve/tls/tls.key")
        self.assertEqual(flags["grpc-ssl-client-ca"], "/etc/clipserve/client-ca/ca.crt")
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts["tls"], "/etc/clipserve/tls")
        vols = {v["name"]: v for v in pod_spec(docs)["volumes"]}
        self.assertEqual(vols["tls"]["secret"]["secretName"], "clipserve-tls")
        self.assertNotIn("hostAliases", pod_spec(docs))

    def test_tls_probe_host_alias_and_probe_client(self):
        docs = render(TLS, sets=["tls.probeHost=clipserve.video.svc",
                                 "tls.clientCA.probeClientSecretName=probe-client"])
        spec = pod_spec(docs)
        self.assertEqual(spec["hostAliases"], [{"ip": "127.0.0.1", "hostnames": ["clipserve.video.svc"]}])
        cmd = server(docs)["readinessProbe"]["exec"]["command"]
        self.assertIn("clipserve.video.svc:8001", cmd)
        self.assertIn("/etc/clipserve/probe-client/tls.crt", cmd)
        vols = {v["name"]: v for v in spec["volumes"]}
        self.assertEqual(vols["probe-client"]["secret"]["secretName"], "probe-client")

    def test_plain_tls_without_client_ca(self):
        docs = render(sets=["tls.enabled=true", "tls.secretName=s"])
        flags = server_flags(docs)
        self.assertNotIn("grpc-ssl-client-ca", flags)
        self.assertNotIn("--ssl-cert", server(docs)["livenessProbe"]["exec"]["command"])
        self.assertIn("tls.secretName", fails(sets=["tls.enabled=true"]))
        self.assertIn("needs tls.enabled", fails(sets=["tls.clientCA.enabled=true"]))


class SecurityContextTest(unittest.TestCase):
    def test_non_root_read_only(self):
        variants = [(None,), (GPU,), (AUTOSCALING,), (TLS,)]
        init = ["modelRepository.source=initContainer"]
        for values in variants:
            for sets in ([], init):
                docs = render(*values, sets=sets)
                for d in docs:
                    if d["kind"] not in ("Deployment", "Pod"):
                        continue
                    spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
                    psc = spec["securityContext"]
                    self.assertIs(psc["runAsNonRoot"], True)
                    self.assertEqual(psc["runAsUser"], 10001)
                    self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})
                for d, c in all_containers(docs):
                    sc = c["securityContext"]
                    where = "%s/%s" % (d["kind"], c["name"])
                    self.assertIs(sc["runAsNonRoot"], True, where)
                    self.assertEqual(sc["runAsUser"], 10001, where)
                    self.assertIs(sc["readOnlyRootFilesystem"], True, where)
                    self.assertIs(sc["allowPrivilegeEscalation"], False, where)
                    self.assertEqual(sc["capabilities"], {"drop": ["ALL"]}, where)
                    self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"}, where)

    def test_tmp_is_writable(self):
        docs = render()
        mounts = {m["mountPath"]: m["name"] for m in server(docs)["volumeMounts"]}
        vols = {v["name"]: v for v in pod_spec(docs)["volumes"]}
        self.assertIn("emptyDir", vols[mounts["/tmp"]])

    def test_no_api_token(self):
        docs = render()
        self.assertIs(pod_spec(docs)["automountServiceAccountToken"], False)
        self.assertIs(helmlib.one(docs, "ServiceAccount")["automountServiceAccountToken"], False)


class GpuTest(unittest.TestCase):
    def test_gpu_limit_only_with_gpu_values(self):
        for values in ((None,), (AUTOSCALING,), (TLS,)):
            text = helmlib.template([values[0]]).stdout
            self.assertNotIn("nvidia.com/gpu:", text, values)
        for values in ((GPU,), (GPU, AUTOSCALING)):
            docs = render(*values)
            res = server(docs)["resources"]
            self.assertEqual(res["limits"]["nvidia.com/gpu"], 1)
            self.assertNotIn("nvidia.com/gpu", res.get("requests", {}))
            spec = pod_spec(docs)
            self.assertEqual(spec["nodeSelector"], {"nvidia.com/gpu.present": "true"})
            self.assertIn({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                          spec["tolerations"])
            # The other limits are kept.
            self.assertIn("memory", res["limits"])
            # The GPU image.
            self.assertIn("clipserve-gpu:", server(docs)["image"])

    def test_gpu_count_and_resource_name(self):
        res = server(render(sets=["gpu.enabled=true", "gpu.count=2",
                                  "gpu.resourceName=amd.com/gpu"]))["resources"]
        self.assertEqual(res["limits"]["amd.com/gpu"], 2)
        self.assertNotIn("nvidia.com/gpu", res["limits"])


class ConfigChecksumTest(unittest.TestCase):
    def test_checksum_changes_with_config(self):
        base = checksum(render())
        self.assertRegex(base, r"^[0-9a-f]{64}$")
        self.assertEqual(checksum(helmlib.render([])), base, "the checksum must be stable")
        for sets in (["drain.timeoutSeconds=31"], ["server.extraFlags.decode-threads=4"],
                     ["modelRepository.path=/srv/models"], ["server.metricsPort=9102"],
                     ["tls.enabled=true", "tls.secretName=s"]):
            self.assertNotEqual(checksum(render(sets=sets)), base, sets)
        # Not a server flag: the pods need not roll for it.
        self.assertEqual(checksum(render(sets=["replicaCount=3"])), base)

    def test_checksum_is_the_configmaps(self):
        text = helmlib.template([]).stdout
        m = re.search(r"# Source: clipserve/templates/configmap.yaml\n(.*?)(?=\n---|\Z)", text, re.S)
        self.assertIsNotNone(m)
        # helm hashes the template's whole output, which ends with a newline
        # that `helm template` drops before the next "---".
        want = hashlib.sha256((m.group(1) + "\n").encode()).hexdigest()
        self.assertEqual(checksum(render()), want)

    def test_flags_come_from_the_configmap(self):
        docs = render(sets=["server.extraFlags.decode-threads=4",
                            "server.extraFlags.video-max-seconds=120"])
        flags = server_flags(docs)
        self.assertEqual(flags["decode-threads"], "4")
        self.assertEqual(flags["video-max-seconds"], "120")
        self.assertEqual(flags["grpc-port"], "8001")
        self.assertEqual(flags["metrics-port"], "8002")
        # The image's ENTRYPOINT (tini -- clipserve) runs; args replace CMD.
        self.assertNotIn("command", server(docs))
        for arg in server(docs)["args"]:
            self.assertRegex(arg, r"^--[a-z-]+=\$\(CLIPSERVE_FLAG_[A-Z_]+\)$")
        self.assertIn("sets --grpc-port itself", fails(sets=["server.extraFlags.grpc-port=1"]))
        self.assertIn("not as a flag", fails(sets=["server.extraFlags.grpc-use-ssl=true"]))


class ModelRepositoryTest(unittest.TestCase):
    def test_image(self):
        docs = render()
        self.assertEqual(server_flags(docs)["model-repository"], "/models")
        self.assertNotIn("models", {v["name"] for v in pod_spec(docs)["volumes"]})
        self.assertNotIn("initContainers", pod_spec(docs))

    def test_pvc(self):
        docs = render(sets=["modelRepository.source=pvc", "modelRepository.pvc.claimName=models",
                            "modelRepository.pvc.subPath=i3d"])
        vols = {v["name"]: v for v in pod_spec(docs)["volumes"]}
        self.assertEqual(vols["models"]["persistentVolumeClaim"], {"claimName": "models", "readOnly": True})
        (m,) = [m for m in server(docs)["volumeMounts"] if m["name"] == "models"]
        self.assertEqual((m["mountPath"], m["readOnly"], m["subPath"]), ("/models", True, "i3d"))
        self.assertEqual(server_flags(docs)["model-repository"], "/models")
        self.assertIn("claimName", fails(sets=["modelRepository.source=pvc"]))

    def test_init_container(self):
        docs = render(sets=["modelRepository.source=initContainer", "modelRepository.path=/srv/m"])
        spec = pod_spec(docs)
        (init,) = spec["initContainers"]
        self.assertEqual(init["image"], "docker.io/curlimages/curl:8.11.1")
        self.assertEqual(init["command"][0], "sh")
        self.assertIn({"name": "MODEL_REPOSITORY_PATH", "value": "/srv/m"}, init["env"])
        self.assertIn({"name": "models", "mountPath": "/srv/m"}, init["volumeMounts"])
        vols = {v["name"]: v for v in spec["volumes"]}
        self.assertIn("emptyDir", vols["models"])
        (m,) = [m for m in server(docs)["volumeMounts"] if m["name"] == "models"]
        self.assertEqual((m["mountPath"], m["readOnly"]), ("/srv/m", True))
        self.assertEqual(server_flags(docs)["model-repository"], "/srv/m")
        self.assertIn("initContainer needs", fails(sets=[
            "modelRepository.source=initContainer", "modelRepository.initContainer.image.tag="]))

    def test_builtin(self):
        docs = render(sets=["modelRepository.source=builtin"])
        self.assertNotIn("model-repository", server_flags(docs))
        self.assertIn("must be one of", fails(sets=["modelRepository.source=s3"]))

    def test_poll_mode(self):
        self.assertNotIn("model-control-mode", server_flags(render()))
        docs = render(sets=["modelRepository.source=pvc", "modelRepository.pvc.claimName=models",
                            "modelRepository.poll.enabled=true", "modelRepository.poll.seconds=15"])
        flags = server_flags(docs)
        self.assertEqual((flags["model-control-mode"], flags["repository-poll-seconds"]),
                         ("poll", "15"))
        self.assertIn("poll.enabled needs a repository", fails(sets=[
            "modelRepository.source=builtin", "modelRepository.poll.enabled=true"]))
        self.assertIn("not as a flag", fails(sets=["server.extraFlags.model-control-mode=poll"]))


class ServicesTest(unittest.TestCase):
    def test_main_service(self):
        docs = render()
        svc = helmlib.one(docs, "Service", "clipserve")
        self.assertNotIn("clusterIP", svc["spec"])
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        self.assertEqual((ports["grpc"]["port"], ports["grpc"]["targetPort"], ports["grpc"]["appProtocol"]),
                         (8001, "grpc", "grpc"))
        self.assertEqual((ports["metrics"]["port"], ports["metrics"]["targetPort"],
                          ports["metrics"]["appProtocol"]), (8002, "metrics", "http"))
        container_ports = {p["name"]: p["containerPort"] for p in server(docs)["ports"]}
        self.assertEqual(container_ports, {"grpc": 8001, "metrics": 8002})

    def test_headless_service(self):
        docs = render()
        svc = helmlib.one(docs, "Service", "-headless")
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], False)
        # gRPC only (a ServiceMonitor scrapes each pod once), on the
        # container's port (clients dial the pods directly).
        self.assertEqual([(p["name"], p["port"]) for p in svc["spec"]["ports"]], [("grpc", 8001)])
        docs = render(sets=["server.grpcPort=9001", "service.grpcPort=443"])
        self.assertEqual(helmlib.one(docs, "Service", "-headless")["spec"]["ports"][0]["port"], 9001)
        self.assertEqual(helmlib.find(render(sets=["headlessService.enabled=false"]), "Service", "-headless"), [])

    def test_scrape_annotations_match_prometheus_yml(self):
        """The pod annotations and labels are those deploy/prometheus.yml's
        commented Kubernetes job keeps."""
        with open(os.path.join(REPO, "deploy", "prometheus.yml")) as f:
            text = f.read()
        block = text[text.index("# Replace static_configs above with:"):]
        lines = [re.sub(r"^\s*# ?", "", l) for l in block.splitlines()[1:] if l.strip().startswith("#")]
        k8s = yaml.safe_load("\n".join(lines))
        keep = {tuple(r["source_labels"]): r["regex"] for r in k8s["relabel_configs"]
                if r.get("action") == "keep"}
        ann = deployment(render())["spec"]["template"]["metadata"]["annotations"]
        labels = deployment(render())["spec"]["template"]["metadata"]["labels"]
        self.assertRegex(ann["prometheus.io/scrape"],
                         "^%s$" % keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)])
        self.assertRegex(labels["app.kubernetes.io/name"],
                         "^%s$" % keep[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)])
        self.assertEqual(ann["prometheus.io/port"], "8002")
        self.assertIn('prometheus.io/port: "8002"', text)
        self.assertNotIn("prometheus.io/scrape",
                         deployment(render(AUTOSCALING))["spec"]["template"]["metadata"]["annotations"])


class PdbTest(unittest.TestCase):
    def test_pdb(self):
        pdb = helmlib.one(render(), "PodDisruptionBudget")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertNotIn("minAvailable", pdb["spec"])
        pdb = helmlib.one(render(sets=["pdb.minAvailable=50%", "pdb.maxUnavailable=null"]),
                          "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["minAvailable"], "50%")
        self.assertNotIn("maxUnavailable", pdb["spec"])
        self.assertIn("exactly one", fails(sets=["pdb.minAvailable=1"]))
        self.assertEqual(helmlib.find(render(sets=["pdb.enabled=false"]), "PodDisruptionBudget"), [])


class MonitoringTest(unittest.TestCase):
    def test_off_by_default(self):
        kinds = {d["kind"] for d in render()}
        self.assertFalse(kinds & {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"})
        self.assertEqual(helmlib.find(render(), "ConfigMap", "-dashboard"), [])

    def test_service_monitor(self):
        docs = render(AUTOSCALING)
        sm = helmlib.one(docs, "ServiceMonitor")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        (ep,) = sm["spec"]["endpoints"]
        self.assertEqual((ep["port"], ep["path"], ep["interval"]), ("metrics", "/metrics", "5s"))
        # job="clipserve", which the rules match.
        (relabel,) = [r for r in ep["relabelings"] if r["targetLabel"] == "job"]
        self.assertEqual(relabel["replacement"], "clipserve")
        with open(os.path.join(REPO, "deploy", "alerts.yml")) as f:
            self.assertIn('job="clipserve"', f.read())

    def test_prometheus_rule_is_alerts_yml(self):
        rule = helmlib.one(render(AUTOSCALING), "PrometheusRule")
        with open(os.path.join(REPO, "deploy", "alerts.yml")) as f:
            want = yaml.safe_load(f)["groups"]
        self.assertEqual(rule["spec"]["groups"], want)
        # Prometheus' templates survive Helm untouched.
        text = helmlib.template([AUTOSCALING]).stdout
        self.assertIn("{{ $labels.model }}", text)

    def test_dashboard_configmap(self):
        cm = helmlib.one(render(AUTOSCALING), "ConfigMap", "-dashboard")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "clipserve"})
        with open(os.path.join(REPO, "deploy", "grafana", "dashboards", "clipserve.json")) as f:
            want = json.load(f)
        self.assertEqual(json.loads(cm["data"]["clipserve.json"]), want)
        cm = helmlib.one(render(sets=["metrics.grafanaDashboard.enabled=true",
                                      "metrics.grafanaDashboard.namespace=monitoring",
                                      "metrics.grafanaDashboard.labels.grafana_dashboard=yes"]),
                         "ConfigMap", "-dashboard")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "yes")


class HelmTestPodTest(unittest.TestCase):
    def test_pod(self):
        docs = render()
        pod = helmlib.one(docs, "Pod")
        self.assertEqual(pod["metadata"]["annotations"]["helm.sh/hook"], "test")
        self.assertEqual(pod["spec"]["restartPolicy"], "Never")
        svc = helmlib.one(docs, "Service", "clipserve")
        target = "%s:%d" % (svc["metadata"]["name"],
                            [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"][0])
        (health,) = pod["spec"]["initContainers"]
        self.assertEqual(health["command"], ["clipserve-client"])
        self.assertEqual(health["args"], ["--server", target, "health"])
        (classify,) = pod["spec"]["containers"]
        self.assertEqual(classify["command"], ["clipserve-client"])
        self.assertEqual(classify["args"], ["--server", target, "--timeout-ms", "120000", "classify"])
        self.assertEqual(classify["image"], server(docs)["image"])

    def test_model_and_tls(self):
        pod = helmlib.one(render(TLS, sets=["helmTest.model=kinetics-i3d"]), "Pod")
        args = pod["spec"]["containers"][0]["args"]
        self.assertEqual(args[args.index("--model") + 1], "kinetics-i3d")
        self.assertEqual(args[args.index("--ssl-ca") + 1], "/etc/clipserve/tls/ca.crt")
        self.assertEqual(args[args.index("--ssl-cert") + 1], "/etc/clipserve/client/tls.crt")
        self.assertIn("--ssl-ca", pod["spec"]["initContainers"][0]["args"])
        vols = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"]}
        self.assertEqual(vols, {"tls": "clipserve-tls", "client": "clipserve-tls"})
        self.assertEqual(helmlib.find(render(sets=["helmTest.enabled=false"]), "Pod"), [])


class SpreadTest(unittest.TestCase):
    def test_topology_spread_gets_the_selector(self):
        docs = render()
        selector = deployment(docs)["spec"]["selector"]["matchLabels"]
        tsc = pod_spec(docs)["topologySpreadConstraints"]
        self.assertEqual({c["topologyKey"] for c in tsc},
                         {"kubernetes.io/hostname", "topology.kubernetes.io/zone"})
        for c in tsc:
            self.assertEqual(c["labelSelector"], {"matchLabels": selector})
            self.assertEqual(c["whenUnsatisfiable"], "ScheduleAnyway")


class SchemaTest(unittest.TestCase):
    """values.schema.json turns typos and wrong types into errors."""

    def test_typos_fail_lint_and_template(self):
        for bad in ("unknownKey=1", "replicaCont=3", "autoscaling.minReplica=1", "gpu.enable=true",
                    "drain.timeoutSecond=1", "tls.clientCa.enabled=true", "probes.startup.period=1",
                    "metrics.serviceMonitor.enable=true", "modelRepository.pvc.claim=x",
                    "service.grpcport=1", "helmTest.timeout=1"):
            with self.subTest(bad):
                err = fails(sets=[bad])
                self.assertIn("additional properties", err)
                p = helmlib.helm("lint", "--strict", helmlib.CHART, "--set", bad, check=False)
                self.assertNotEqual(p.returncode, 0, "helm lint accepted --set " + bad)

    def test_wrong_types_fail(self):
        for bad in ("replicaCount=two", "server.grpcPort=70000", "gpu.enabled=yes",
                    "drain.timeoutSeconds=-1", "autoscaling.queueTime.targetAverageValue=fast",
                    "pdb.maxUnavailable=many", "service.type=Ingress", "image.digest=md5:00"):
            with self.subTest(bad):
                fails(sets=[bad])

    def test_schema_is_strict_in_the_main_objects(self):
        with open(os.path.join(helmlib.CHART, "values.schema.json")) as f:
            schema = json.load(f)
        self.assertEqual(schema["$schema"], "http://json-schema.org/draft-07/schema#")
        self.assertIs(schema["additionalProperties"], False)
        for key in ("image", "server", "modelRepository", "gpu", "probes", "drain", "tls",
                    "service", "headlessService", "autoscaling", "pdb", "metrics",
                    "serviceAccount", "helmTest"):
            self.assertIs(schema["properties"][key]["additionalProperties"], False, key)
        self.assertIs(schema["properties"]["server"]["properties"]["connection"]
                      ["additionalProperties"], False)
        # Every default value is described by the schema.
        self.assertEqual(set(DEFAULTS) - {"global"}, set(schema["properties"]) - {"global"})


class CombinationsTest(unittest.TestCase):
    """Every branch of the templates renders valid Kubernetes objects."""

    def test_all_combinations_validate(self):
        combos = [
            ((GPU, AUTOSCALING, TLS), []),
            ((), ["modelRepository.source=initContainer",
                  "modelRepository.initContainer.env[0].name=MODEL_REPOSITORY_URL",
                  "modelRepository.initContainer.env[0].value=https://models.example.com/m.tgz"]),
            ((), ["modelRepository.source=pvc", "modelRepository.pvc.claimName=m",
                  "modelRepository.pvc.subPath=x"]),
            ((), ["modelRepository.source=builtin", "headlessService.enabled=false",
                  "pdb.minAvailable=1", "pdb.maxUnavailable=null", "serviceAccount.create=false"]),
            ((TLS,), ["tls.probeHost=clipserve.video.svc",
                      "tls.clientCA.secretName=client-ca",
                      "tls.clientCA.probeClientSecretName=probe-client"]),
            ((), ["tls.enabled=true", "tls.secretName=s", "server.extraFlags.decode-threads=4",
                  "image.digest=sha256:" + "0" * 64, "runtimeClassName=nvidia",
                  "priorityClassName=high", "imagePullSecrets[0].name=regcred"]),
            ((AUTOSCALING,), ["autoscaling.cpu.enabled=false",
                              "metrics.grafanaDashboard.namespace=monitoring"]),
        ]
        docs = []
        for values, sets in combos:
            docs += render(*values, sets=sets)
        rc, out = helmlib.validate(docs, label="combinations")
        self.assertEqual(rc, 0, out)


class NotesTest(unittest.TestCase):
    def notes(self, *values_files, sets=()):
        p = helmlib.helm("install", "clipserve", helmlib.CHART, "--dry-run=client",
                         "--namespace", "video", *helmlib.values_args(values_files, sets))
        return p.stdout[p.stdout.index("NOTES:"):]

    def test_notes(self):
        n = self.notes()
        self.assertIn("clipserve.video.svc.cluster.local:8001", n)
        self.assertIn("dns:///clipserve-headless.video.svc.cluster.local:8001", n)
        self.assertIn("helm test clipserve", n)
        self.assertNotIn("UNTRAINED", n)
        self.assertIn("UNTRAINED", self.notes(sets=["modelRepository.source=builtin"]))
        n = self.notes(AUTOSCALING)
        self.assertIn("clipserve_queue_seconds_per_request", n)
        self.assertIn("--ssl-ca", self.notes(TLS))


if __name__ == "__main__":
    helmlib.check_tools()
    unittest.main(verbosity=2)
