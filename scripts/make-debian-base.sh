#!/usr/bin/env bash
# Makes a Debian 12 (bookworm) base image locally, with no container registry:
# debootstrap (minbase) from the Debian mirror apt already uses, set up like
# the official debian:bookworm-slim image (its apt and dpkg settings), packed
# into a tarball and committed with buildah as IMAGE (default
# localhost/debian:bookworm-slim).
# The Dockerfiles take it as their base: --build-arg BASE_IMAGE=IMAGE.
#
#   scripts/make-debian-base.sh [IMAGE]
#
# Environment:
#   CACHE_DIR       where the tarball is kept and reused
#                   (default /var/tmp/clipserve-container)
#   DEBIAN_MIRROR   Debian mirror (default: the one apt uses for bookworm)
#   SECURITY_MIRROR mirror of bookworm-security (default: the one apt uses)
# No mirror is built in: without apt sources for a suite, and without the
# variable, the script stops and says which is missing.
#   BUILDAH_ROOT, BUILDAH_RUNROOT
#                   buildah storage (default: buildah's own defaults)
#   FORCE=1         rebuild the tarball and the image even if present
# Storage driver vfs and chroot isolation: needs root, no daemon, no overlay.
# Idempotent: an existing image is kept; an existing tarball is reused.
set -euo pipefail

image=${1:-localhost/debian:bookworm-slim}
suite=bookworm
cache_dir=${CACHE_DIR:-/var/tmp/clipserve-container}
tarball=$cache_dir/debian-$suite-slim.tar
force=${FORCE:-0}

bah=(buildah --storage-driver vfs)
[ -n "${BUILDAH_ROOT:-}" ] && bah+=(--root "$BUILDAH_ROOT")
[ -n "${BUILDAH_RUNROOT:-}" ] && bah+=(--runroot "$BUILDAH_RUNROOT")

log() { echo "make-debian-base: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root (debootstrap, buildah with vfs storage)"
  exit 1
fi
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool missing (apt-get install $tool)"; exit 1; }
done

if [ "$force" != 1 ] && "${bah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  log "image $image present"
  exit 0
fi

# apt_mirror SUITE: the URI apt uses for SUITE.
source "$(dirname "$0")/lib/apt-mirror.sh"

# The settings of the official debian:bookworm-slim image, in ROOT (a
# debootstrapped tree; refuses anything else): dpkg without an fsync per file
# (a failed build throws its layer away anyway; this saves minutes of
# unpacking), no downloaded packages, package lists or translations kept, no
# documentation, manual pages or locales installed (copyright files stay).
slimify() {
  local r=${1:?}
  case "$r" in
    "$cache_dir"/rootfs.*) ;;
    *) log "slimify: $r is not a rootfs under $cache_dir"; exit 1 ;;
  esac
  [ -f "$r/etc/debian_version" ] || { log "slimify: $r is not a Debian tree"; exit 1; }
  printf 'force-unsafe-io\n' >"$r/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  printf '%s\n' \
    'path-exclude /usr/share/doc/*' \
    'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/linda/*' \
    'path-exclude /usr/share/lintian/overrides/*' \
    'path-exclude /usr/share/locale/*' \
    'path-exclude /usr/share/man/*' \
    >"$r/etc/dpkg/dpkg.cfg.d/docker"
  local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
  printf '%s\n' \
    "DPkg::Post-Invoke { $clean };" \
    "APT::Update::Post-Invoke { $clean };" \
    'Dir::Cache::pkgcache "";' \
    'Dir::Cache::srcpkgcache "";' \
    >"$r/etc/apt/apt.conf.d/docker-clean"
  printf 'Acquire::Languages "none";\n' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\n' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # What debootstrap installed before these settings existed.
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  local d
  for d in man info locale groff lintian/overrides; do
    if [ -d "$r/usr/share/$d" ]; then
      find "$r/usr/share/$d" -mindepth 1 -delete
    fi
  done
}

mirror=${DEBIAN_MIRROR:-$(apt_mirror "$suite" | head -n1)}
if [ -z "$mirror" ]; then
  log "no Debian mirror: apt has no source for $suite (/etc/apt/sources.list*); set DEBIAN_MIRROR"
  exit 1
fi
security=${SECURITY_MIRROR:-$(apt_mirror "$suite-security" | head -n1)}
if [ -z "$security" ]; then
  log "no mirror for $suite-security: apt has no source for it; set SECURITY_MIRROR"
  exit 1
fi

mkdir -p "$cache_dir"
if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
  root=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  [ -n "$root" ] && [ -d "$root" ] || { log "mktemp failed"; exit 1; }
  cleanup() {
    # debootstrap mounts /proc and /sys in the target while it runs.
    umount -R "$root/proc" "$root/sys" 2>/dev/null || true
    rm -rf --one-file-system "$root"
  }
  trap cleanup EXIT
  log "debootstrap --variant=minbase $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
    tail -n 30 "$cache_dir/debootstrap.log" >&2
    log "debootstrap failed (log: $cache_dir/debootstrap.log)"
    exit 1
  }
  # The apt sources of the official image (bookworm, -updates, -security),
  # pointing at the same mirrors as this machine.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  slimify "$root"
  rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/* \
         "${root:?}"/var/log/* "${root:?}"/tmp/* "${root:?}"/debootstrap
  : >"${root:?}/etc/hostname"
  : >"${root:?}/etc/resolv.conf"
  umount -R "$root/proc" "$root/sys" 2>/dev/null || true
  tar -C "$root" --numeric-owner --xattrs -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  cleanup
  trap - EXIT
  log "tarball $tarball ($(du -h "$tarball" | cut -f1))"
else
  log "reusing $tarball"
fi

ctr=$("${bah[@]}" from scratch)
trap '"${bah[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
# ADD of a local tar archive unpacks it.
"${bah[@]}" add "$ctr" "$tarball" / >/dev/null
"${bah[@]}" config --os linux --arch "$(dpkg --print-architecture)" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd bash --label org.opencontainers.image.description="Debian $suite slim (debootstrap minbase from $mirror)" \
  "$ctr"
"${bah[@]}" commit --quiet --rm "$ctr" "$image" >/dev/null
trap - EXIT
log "image $image committed"
