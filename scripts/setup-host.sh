#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host (as root) for ember-ci: podman with runc and
# explicit ulimits (crun fails on our hosts, see docs/ARCHITECTURE.md), git,
# debootstrap, and the local base image localhost/debian:bookworm that every
# image in the demo and the tests is built FROM (no registry is reachable).
# Idempotent: each part is skipped when already in place.
# Usage: setup-host.sh [--with-browser]
set -euo pipefail

BASE_IMAGE=localhost/debian:bookworm

log() { printf '[setup-host] %s\n' "$*"; }

need_packages=()
for tool in podman:podman runc:runc git:git debootstrap:debootstrap curl:curl \
            pkg-config:pkg-config cc:gcc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_packages+=("${tool#*:}")
done
dpkg -s libssl-dev >/dev/null 2>&1 || need_packages+=(libssl-dev)
dpkg -s uidmap >/dev/null 2>&1 || need_packages+=(uidmap)
# --with-browser: Debian's chromium and node for the browser test
# (tests/all/browser.rs drives chromium with playwright-core, which never
# downloads a browser).
if [ "${1:-}" = --with-browser ]; then
  for tool in chromium:chromium node:nodejs npm:npm; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_packages+=("${tool#*:}")
  done
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
  log "configuring podman: runc runtime, explicit ulimits ($conf)"
  mkdir -p /etc/containers
  cat >"$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
fi

if ! podman image exists "$BASE_IMAGE"; then
  log "building $BASE_IMAGE with debootstrap (about a minute)"
  root=$(mktemp -d /var/tmp/ember-ci-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | podman import - "$BASE_IMAGE" >/dev/null
fi
log "ready: $(podman --version), runtime runc, base image $BASE_IMAGE"
