# Wheels that scripts/requirements/downloads.txt pins (NAME==VERSION with
# --hash=sha256:...), fetched by the project venv's pip and never installed.
# Sourced by scripts/fetch-k8s-tools.sh and scripts/fetch-perf-analyzer.sh,
# which set $repo and $venv and define die().

# pinned_sha256 NAME: the pinned file's sha256 (VERSION: pinned_version).
pinned_sha256() {
  awk -v n="$1==" 'index($1, n) == 1 { want = 1 }
      want && match($0, /--hash=sha256:[0-9a-f]+/) {
        print substr($0, RSTART + 14, RLENGTH - 14); exit }' \
    "$repo/scripts/requirements/downloads.txt"
}
pinned_version() {
  awk -v n="$1==" 'index($1, n) == 1 { v = substr($1, length(n) + 1); sub(/\\$/, "", v); print v; exit }' \
    "$repo/scripts/requirements/downloads.txt"
}

# pinned_wheel NAME DIR [PIP ARGS...]: prints the path of NAME's pinned wheel
# in DIR, downloaded there (pip download --no-deps --require-hashes
# --only-binary=:all: PIP ARGS) unless DIR already holds a file with its hash.
pinned_wheel() {
  local name=$1 dir=$2 version sha f work
  shift 2
  version=$(pinned_version "$name")
  sha=$(pinned_sha256 "$name")
  [ -n "$version" ] && [ -n "$sha" ] ||
    die "scripts/requirements/downloads.txt pins no $name==VERSION with --hash=sha256"
  mkdir -p "$dir"
  for f in "$dir"/*.whl; do
    [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ] && { echo "$f"; return; }
  done
  echo "pip download $name==$version $*" >&2
  work=$(mktemp -d "$dir/download.XXXXXX")
  printf '%s==%s --hash=sha256:%s\n' "$name" "$version" "$sha" >"$work/requirements.txt"
  "$venv/bin/pip" download --quiet --no-deps --require-hashes --only-binary=:all: \
    --disable-pip-version-check -d "$work" "$@" -r "$work/requirements.txt" >&2 ||
    { rm -rf "$work"; die "pip download $name==$version failed (no PyPI?)"; }
  f=$(ls "$work"/*.whl)
  mv "$f" "$dir/"
  rm -rf "$work"
  echo "$dir/$(basename "$f")"
}
