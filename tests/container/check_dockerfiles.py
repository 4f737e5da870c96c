#!/usr/bin/python3
"""Checks deploy/Dockerfile.cpu and deploy/Dockerfile.gpu without building them.

  check_dockerfiles.py SOURCE_DIR

- Every path COPY'd or ADD'ed from the build context (the repository root)
  exists and is not left out by .dockerignore; every COPY --from names an
  earlier stage.
- The build stage copies CMakeLists.txt and every folder the top-level
  CMakeLists.txt adds (tests and benchmarks aside), and switches tests and
  benchmarks off.
- Base images are build ARGs with defaults: CPU BASE_IMAGE a Debian 12
  image; GPU a CUDA devel image to build and a CUDA runtime image to run.
- The final stage: non-root USER 10001, ENTRYPOINT tini -- clipserve,
  STOPSIGNAL SIGTERM, VOLUME /models, EXPOSE 8001 8002, the default CMD on
  those ports, a HEALTHCHECK with clipserve-client health, the binaries in
  /usr/local/bin.
- The CPU build stage installs only packages scripts/install-deps.sh
  installs (the same Debian packages as the host build).
- Both build stages install LibTorch from scripts/requirements/torch.txt with
  pip --require-hashes: the same torch (2.11.0) as the host build's venv.

Exit status 0 when all holds, 1 otherwise.
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dockerfile_parse as dp  # noqa: E402

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def cmake_source_dirs(repo):
    """Folders the top-level CMakeLists.txt adds, tests and bench aside."""
    with open(os.path.join(repo, "CMakeLists.txt")) as f:
        text = re.sub(r"#[^\n]*", "", f.read())
    dirs = re.findall(r"add_subdirectory\(\s*([A-Za-z0-9_./-]+)", text)
    return sorted({d for d in dirs if d not in ("tests", "bench")})


def check_context_sources(name, stage_names, ins, repo, ignore_rules):
    flags, args = ins.flags_and_args()
    where = f"{name}:{ins.line}"
    if len(args) < 2:
        problem(where, f"{ins.keyword} needs a source and a destination")
        return []
    sources = args[:-1]
    if "from" in flags:
        src = flags["from"]
        if src not in stage_names and not re.match(r"^[a-z0-9.-]+(/[a-z0-9._-]+)+(:[\w.-]+)?$", src):
            problem(where, f"COPY --from={src}: no earlier stage of that name")
        return []
    copied = []
    for src in sources:
        if re.match(r"^(https?|git)://", src):
            continue
        rel = os.path.normpath(src).lstrip("/")
        matches = glob.glob(os.path.join(repo, rel)) if any(c in rel for c in "*?[") \
            else ([os.path.join(repo, rel)] if os.path.exists(os.path.join(repo, rel)) else [])
        if not matches:
            problem(where, f"{ins.keyword} source {src!r} does not exist in the repository")
            continue
        for m in matches:
            r = os.path.relpath(m, repo)
            if r != "." and dp.ignored(ignore_rules, r):
                problem(where, f"{ins.keyword} source {r!r} is excluded by .dockerignore")
        copied.append(rel.rstrip("/"))
    return copied


def check_file(path, repo, ignore_rules, variant):
    name = os.path.relpath(path, repo)
    if not os.path.exists(path):
        problem(name, "missing")
        return
    instructions = dp.parse(path)
    global_args, stages = dp.stages(instructions)
    if len(stages) < 2:
        problem(name, "want a multi-stage build (build, then runtime)")
        return

    # Base images: ARGs with defaults, or earlier stages.
    stage_names = set()
    for stage in stages:
        base = stage.base
        m = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", base)
        if base in stage_names:
            pass
        elif not m:
            problem(name, f"FROM {base}: name the base image through a build ARG")
        elif not global_args.get(m.group(1)):
            problem(name, f"FROM {base}: ARG {m.group(1)} needs a default before the first FROM")
        if stage.name:
            stage_names.add(stage.name)
    resolved = [dp.expand(s.base, global_args) for s in stages]

    if variant == "cpu":
        default = global_args.get("BASE_IMAGE") or ""
        if not re.fullmatch(r"(docker\.io/(library/)?)?debian:bookworm(-slim)?", default):
            problem(name, f"ARG BASE_IMAGE={default!r}: want debian:bookworm or debian:bookworm-slim")
        if any(s.base != "${BASE_IMAGE}" for s in stages):
            problem(name, "every stage should start FROM ${BASE_IMAGE}")
    else:
        build = [r for s, r in zip(stages, resolved) if s.name == "build"]
        if not build or not re.match(r"^nvidia/cuda:[\w.-]*devel", build[0]):
            problem(name, f"the build stage must start from a CUDA devel image, got {build}")
        if not re.match(r"^nvidia/cuda:[\w.-]*runtime", resolved[-1]):
            problem(name, f"the final stage must start from a CUDA runtime image, got {resolved[-1]}")

    # Sources from the context; the build stage's coverage of the sources.
    seen = set()
    copied_by_stage = {}
    for stage in stages:
        copied = []
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD"):
                copied += check_context_sources(name, seen, ins, repo, ignore_rules)
        copied_by_stage[stage.name or stage.index] = copied
        if stage.name:
            seen.add(stage.name)
    build_stage = next((s for s in stages if s.name == "build"), None)
    if build_stage is None:
        problem(name, "no stage named 'build'")
    else:
        copied = set(copied_by_stage["build"])
        needed = ["CMakeLists.txt"] + cmake_source_dirs(repo)
        for d in needed:
            if d not in copied:
                problem(name, f"the build stage does not COPY {d} (the top-level CMakeLists.txt needs it)")
        runs = " ".join(i.rest for i in build_stage.instructions if i.keyword == "RUN")
        for flag in ("-DCLIPSERVE_BUILD_TESTS=OFF", "-DCLIPSERVE_BUILD_BENCH=OFF",
                     "-DCMAKE_BUILD_TYPE=Release", "--target clipserve clipserve-client"):
            if flag not in runs:
                problem(name, f"the build stage should configure/build with {flag}")
        if variant == "cpu":
            check_same_packages(name, build_stage, repo)
        check_same_libtorch(name, build_stage, repo)

    check_final_stage(name, stages[-1])


def apt_packages(instructions):
    pkgs = set()
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        for m in re.finditer(r"apt-get install((?:\s+(?:-[-\w=]+|[a-z0-9][a-z0-9+.:-]*))+)", ins.rest):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def check_same_packages(name, stage, repo):
    with open(os.path.join(repo, "scripts/install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"packages=\((.*?)\)", text, re.S)
    host = set(re.sub(r"#[^\n]*", "", m.group(1)).split()) if m else set()
    if "build-essential" in host:
        host |= {"g++", "gcc", "make"}
    for p in sorted(apt_packages(stage.instructions) - host):
        problem(name, f"the build stage installs {p}, which scripts/install-deps.sh does not")


def check_same_libtorch(name, stage, repo):
    """The image builds against the LibTorch the host build uses: torch from
    scripts/requirements/torch.txt (which venv.txt includes), hash-checked."""
    with open(os.path.join(repo, "scripts/requirements/venv.txt")) as f:
        if not re.search(r"^-r torch\.txt$", f.read(), re.M):
            problem("scripts/requirements/venv.txt", "does not include torch.txt")
    copies = " ".join(i.rest for i in stage.instructions if i.keyword == "COPY")
    if "scripts/requirements/torch.txt" not in copies:
        problem(name, "the build stage does not COPY scripts/requirements/torch.txt")
    runs = [i.rest for i in stage.instructions if i.keyword == "RUN"]
    if not any(re.search(r"pip install .*--require-hashes.*-r \S*torch\.txt", r, re.S) for r in runs):
        problem(name, "the build stage does not pip install --require-hashes -r .../torch.txt")


def check_final_stage(name, stage):
    last = {}
    for ins in stage.instructions:
        last[ins.keyword] = ins
        if ins.keyword in ("EXPOSE", "VOLUME"):
            last.setdefault(ins.keyword + "*", []).append(ins)
    user = last.get("USER")
    if not user or user.rest.split(":")[0] != "10001":
        problem(name, f"final stage USER {user.rest if user else None!r}: want 10001 (non-root)")
    ep = last.get("ENTRYPOINT")
    ep_args = ep.json_args() if ep else None
    if not ep_args or len(ep_args) < 3 or os.path.basename(ep_args[0]) != "tini" \
            or ep_args[1] != "--" or ep_args[2] != "clipserve":
        problem(name, f"ENTRYPOINT {ep.rest if ep else None}: want [\".../tini\", \"--\", \"clipserve\"]")
    cmd = last.get("CMD")
    cmd_args = cmd.json_args() if cmd else None
    if cmd_args is None or "--grpc-port" not in cmd_args or "--metrics-port" not in cmd_args:
        problem(name, f"CMD {cmd.rest if cmd else None}: want the JSON form with --grpc-port and --metrics-port")
    else:
        if cmd_args[cmd_args.index("--grpc-port") + 1] != "8001" or \
                cmd_args[cmd_args.index("--metrics-port") + 1] != "8002":
            problem(name, "CMD: want --grpc-port 8001 --metrics-port 8002")
    stop = last.get("STOPSIGNAL")
    if not stop or stop.rest.strip() not in ("SIGTERM", "15", "TERM"):
        problem(name, "want STOPSIGNAL SIGTERM")
    volumes = " ".join(i.rest for i in last.get("VOLUME*", []))
    if "/models" not in re.findall(r"[\w/]+", volumes):
        problem(name, "want VOLUME /models")
    ports = set(re.findall(r"\d+", " ".join(i.rest for i in last.get("EXPOSE*", []))))
    if not {"8001", "8002"} <= ports:
        problem(name, f"EXPOSE {sorted(ports)}: want 8001 and 8002")
    hc = last.get("HEALTHCHECK")
    if not hc or "clipserve-client" not in hc.rest or "health" not in hc.rest:
        problem(name, "want a HEALTHCHECK running clipserve-client ... health")
    copies = " ".join(i.rest for i in stage.instructions if i.keyword == "COPY")
    if "/usr/local/bin" not in copies:
        problem(name, "the binaries should go to /usr/local/bin")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    repo = os.path.abspath(sys.argv[1])
    rules = dp.read_dockerignore(os.path.join(repo, ".dockerignore"))
    if not rules:
        problem(".dockerignore", "missing or empty: the build context would hold the build trees")
    for variant in ("cpu", "gpu"):
        check_file(os.path.join(repo, f"deploy/Dockerfile.{variant}"), repo, rules, variant)
    if problems:
        for p in problems:
            print("FAIL", p)
        return 1
    print("Dockerfiles: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
