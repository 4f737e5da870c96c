#!/usr/bin/python3
"""Shows that check_dockerfiles.py and check_compose.py catch what they are for.

  selftest.py SOURCE_DIR

Copies the files the checks read into a scratch tree (source folders as empty
stand-ins), confirms both checks pass on it, then breaks one thing at a time
(a copied folder or a mounted file removed, a folder left out of the build
context, a new CMake folder not copied, the compose Prometheus configuration
drifting from deploy/prometheus.yml, root as the user) and expects a failure
naming it.

Exit status 0 when every case behaves, 1 otherwise.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))


def scratch(repo, tmp):
    """The files the checks read, in a scratch tree."""
    root = os.path.join(tmp, "repo")
    os.makedirs(root)
    for f in ("CMakeLists.txt", ".dockerignore", "scripts/install-deps.sh"):
        os.makedirs(os.path.dirname(os.path.join(root, f)), exist_ok=True)
        shutil.copy(os.path.join(repo, f), os.path.join(root, f))
    shutil.copytree(os.path.join(repo, "deploy"), os.path.join(root, "deploy"))
    shutil.copytree(os.path.join(repo, "scripts/requirements"),
                    os.path.join(root, "scripts/requirements"))
    shutil.copytree(os.path.join(repo, "cmake"), os.path.join(root, "cmake"))
    with open(os.path.join(repo, "CMakeLists.txt")) as f:
        for d in re.findall(r"add_subdirectory\(\s*([A-Za-z0-9_./-]+)", f.read()):
            os.makedirs(os.path.join(root, d), exist_ok=True)
            open(os.path.join(root, d, "CMakeLists.txt"), "w").close()
    return root


def run(check, root):
    r = subprocess.run([sys.executable, os.path.join(here, check), root],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    if old not in text:
        raise AssertionError(f"{old!r} not in {path}")
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


CASES = [
    # (name, check, change(root), text expected in the failure)
    ("copied source folder removed", "check_dockerfiles.py",
     lambda r: shutil.rmtree(os.path.join(r, "video")), "'video/' does not exist"),
    ("source folder excluded by .dockerignore", "check_dockerfiles.py",
     lambda r: open(os.path.join(r, ".dockerignore"), "a").write("server\n"), "excluded by .dockerignore"),
    ("new CMake folder not copied", "check_dockerfiles.py",
     lambda r: (os.makedirs(os.path.join(r, "newlib")),
                open(os.path.join(r, "CMakeLists.txt"), "a").write("\nadd_subdirectory(newlib)\n")),
     "does not COPY newlib"),
    ("runtime user root", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.cpu"), "USER 10001:10001", "USER root"), "want 10001"),
    ("no STOPSIGNAL", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.gpu"), "STOPSIGNAL SIGTERM", ""), "STOPSIGNAL"),
    ("hard-coded base image", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.cpu"), "FROM ${BASE_IMAGE} AS build",
                    "FROM debian:bookworm AS build"), "through a build ARG"),
    ("package the host build does not use", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.cpu"), "prometheus-cpp-dev python3-venv \\",
                    "prometheus-cpp-dev python3-venv libboost-dev \\"), "libboost-dev"),
    ("GPU image on another LibTorch than the host build", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.gpu"), "-r /tmp/req/torch.txt",
                    "torch==2.6.0"), "--require-hashes -r .../torch.txt"),
    ("CPU image without the pinned torch file", "check_dockerfiles.py",
     lambda r: edit(os.path.join(r, "deploy/Dockerfile.cpu"),
                    "scripts/requirements/torch.txt ", ""), "does not COPY scripts/requirements/torch.txt"),
    ("mounted dashboards removed", "check_compose.py",
     lambda r: shutil.rmtree(os.path.join(r, "deploy/grafana/dashboards")), "does not exist"),
    ("mounted alert rules removed", "check_compose.py",
     lambda r: os.remove(os.path.join(r, "deploy/alerts.yml")), "./alerts.yml"),
    ("compose Prometheus config removed", "check_compose.py",
     lambda r: os.remove(os.path.join(r, "deploy/compose/prometheus.yml")), "compose/prometheus.yml"),
    ("deploy/prometheus.yml changed, compose copy not", "check_compose.py",
     lambda r: edit(os.path.join(r, "deploy/prometheus.yml"), "scrape_interval: 5s", "scrape_interval: 10s"),
     "differs from deploy/prometheus.yml"),
    ("Dockerfile named by compose removed", "check_compose.py",
     lambda r: os.remove(os.path.join(r, "deploy/Dockerfile.gpu")), "Dockerfile deploy/Dockerfile.gpu"),
    ("compose file not YAML", "check_compose.py",
     lambda r: open(os.path.join(r, "deploy/docker-compose.yml"), "a").write("\n  - [unbalanced\n"),
     "does not parse"),
]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    repo = os.path.abspath(sys.argv[1])
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch(repo, os.path.join(tmp, "base"))
        for check in ("check_dockerfiles.py", "check_compose.py"):
            rc, out = run(check, root)
            if rc != 0:
                print(f"FAIL {check} fails on an unbroken copy:\n{out}")
                return 1
        for i, (name, check, change, expect) in enumerate(CASES):
            root = scratch(repo, os.path.join(tmp, str(i)))
            change(root)
            rc, out = run(check, root)
            if rc == 1 and expect in out:
                print(f"ok   {name}: {check} fails")
            else:
                failures += 1
                print(f"FAIL {name}: {check} exit {rc}, want 1 mentioning {expect!r}:\n{out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
