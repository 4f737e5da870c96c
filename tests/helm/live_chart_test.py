#!/usr/bin/env python3
"""The chart's rendered commands against the real server, no cluster needed.

  live_chart_test.py --server build/server/clipserve --client build/client/clipserve-client

For plaintext and for mutual TLS (throwaway certificates from the openssl
tool, laid out as a kubernetes.io/tls Secret: tls.crt, tls.key, ca.crt),
renders the chart (built-in model, free ports) and does what the kubelet
and `helm test` would do with the result:
  1. starts clipserve with exactly the Deployment's args, $(VAR)s resolved
     from the ConfigMap, mount paths mapped to the certificate directory;
  2. runs the startup, readiness and liveness probes: the native gRPC probe
     as a grpc.health.v1 Check of service "" on its port, the TLS exec
     probe as its command line; each must report SERVING;
  3. scrapes the metrics endpoint the pod annotations name;
  4. runs the helm test pod's health and classify commands (Service name
     mapped to localhost): both must exit 0;
  5. sends SIGTERM: the server must exit 0 within the grace period the pod
     leaves after the preStop sleep.
Every wait is bounded; the server is killed on any failure.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import helmlib
from render_assertions import server_flags

DIRS = ("/etc/clipserve/tls/", "/etc/clipserve/client-ca/", "/etc/clipserve/client/",
        "/etc/clipserve/probe-client/")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d):
    """ca.crt, and tls.crt/tls.key for localhost and the Service names, with
    server and client usages (the probes present it as a client)."""
    def run(cmd):
        subprocess.run(cmd, cwd=d, check=True, capture_output=True, timeout=60)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "1", "-subj", "/CN=clipserve-test-ca"])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
         "-subj", "/CN=clipserve"])
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,DNS:clipserve,DNS:clipserve.video.svc\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    run(["openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "ext.cnf"])


def mapped(text, certs):
    for d in DIRS:
        text = text.replace(d, certs + "/")
    return text


def run_client(client, args, timeout=180):
    p = subprocess.run([client, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_variant(name, sets, opts, certs):
    grpc_port, metrics_port = free_port(), free_port()
    sets = ["modelRepository.source=builtin", "server.grpcPort=%d" % grpc_port,
            "server.metricsPort=%d" % metrics_port, "server.extraFlags.decode-threads=1",
            "drain.timeoutSeconds=5", "drain.queueDrainSeconds=10"] + sets
    docs = helmlib.render([], sets)
    deployment = helmlib.one(docs, "Deployment")
    pod_spec = deployment["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    flags = server_flags(docs)
    args = ["--%s=%s" % (k, mapped(v, certs)) for k, v in sorted(flags.items())]
    print("[%s] clipserve %s" % (name, " ".join(args)), flush=True)
    server = subprocess.Popen([opts.server, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    log = []
    ready = threading.Event()

    def reader():
        for line in server.stdout:
            log.append(line)
            if "serving gRPC on port" in line:
                ready.set()
    threading.Thread(target=reader, daemon=True).start()
    try:
        if not ready.wait(180):
            raise AssertionError("server not serving within 180 s:\n" + "".join(log))

        # 2. The probes, as the kubelet runs them.
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container[probe]
            if "grpc" in spec:
                self_args = ["--server", "localhost:%d" % spec["grpc"]["port"], "health",
                             "--service", spec["grpc"]["service"]]
            else:
                cmd = [mapped(a, certs) for a in spec["exec"]["command"]]
                assert cmd[0] == "clipserve-client", cmd
                self_args = cmd[1:]
            rc, out = run_client(opts.client, self_args, timeout=spec["timeoutSeconds"] + 10)
            print("[%s] %s: clipserve-client %s -> %d %s"
                  % (name, probe, " ".join(self_args), rc, out), flush=True)
            assert rc == 0 and out.endswith("SERVING"), (probe, rc, out)

        # 3. The scrape the annotations ask for.
        ann = deployment["spec"]["template"]["metadata"]["annotations"]
        url = "http://127.0.0.1:%s%s" % (ann["prometheus.io/port"], ann["prometheus.io/path"])
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
        assert "clipserve_model_ready" in body, body[:500]
        print("[%s] scrape %s: %d bytes" % (name, url, len(body)), flush=True)

        # 4. helm test: the test pod's two containers, the Service mapped
        # to this server.
        test_pod = helmlib.one(docs, "Pod")
        for c in test_pod["spec"]["initContainers"] + test_pod["spec"]["containers"]:
            assert c["command"] == ["clipserve-client"], c["command"]
            cargs = [mapped(a, certs) for a in c["args"]]
            i = cargs.index("--server") + 1
            assert cargs[i] == "clipserve:8001", cargs[i]  # the Service
            cargs[i] = "localhost:%d" % grpc_port
            rc, out = run_client(opts.client, cargs)
            print("[%s] helm test %s: clipserve-client %s -> %d\n%s"
                  % (name, c["name"], " ".join(cargs), rc, out), flush=True)
            assert rc == 0, (c["name"], rc, out)
        assert "model i3d" in out, out

        # 5. SIGTERM, after the preStop sleep in a cluster: exit 0 in time.
        grace = pod_spec["terminationGracePeriodSeconds"] - \
            container["lifecycle"]["preStop"]["sleep"]["seconds"]
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=grace)
        took = time.monotonic() - start
        print("[%s] SIGTERM: exit %d after %.1f s (grace %d s)" % (name, rc, took, grace), flush=True)
        assert rc == 0, "".join(log)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
            print("".join(log[-30:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", required=True)
    opts = ap.parse_args()
    helmlib.check_tools()
    if not shutil.which("openssl"):
        sys.exit("needs the openssl tool (Debian: openssl)")
    certs = tempfile.mkdtemp(prefix="clipserve-chart-live-")
    try:
        make_certs(certs)
        check_variant("plaintext", [], opts, certs)
        check_variant("mutual TLS", ["tls.enabled=true", "tls.secretName=clipserve-tls",
                                     "tls.clientCA.enabled=true"], opts, certs)
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    print("PASS: the chart's server args, probes, scrape, helm test and drain work "
          "against the real server")


if __name__ == "__main__":
    main()
