#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host (as root) for ember-ci: podman with runc and
# explicit ulimits (crun fails on our hosts, see docs/ARCHITECTURE.md), git,
# debootstrap, and a debootstrapped Debian image (localhost/debian:bookworm)
# that scripts/local-registry.sh serves as docker.io/library/debian:bookworm
# where no public registry is reachable. Images everywhere else keep their
# public names.
# Idempotent: each part is skipped when already in place.
# Usage: setup-host.sh [--with-browser]
set -euo pipefail

BASE_IMAGE=localhost/debian:bookworm

log() { printf '[setup-host] %s\n' "$*"; }

need_packages=()
for tool in podman:podman runc:runc git:git debootstrap:debootstrap curl:curl \
            docker-registry:docker-registry \
            pkg-config:pkg-config cc:gcc ssh:openssh-client /usr/sbin/sshd:openssh-server; do
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

# Host configuration changes only through drop-in files, each printed when
# written; the host's own containers.conf and registries.conf stay as they are.
write_drop_in() {
  local file=$1 why=$2 content
  content=$(cat)
  if [ "$(cat "$file" 2>/dev/null)" != "$content" ]; then
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$content" >"$file"
    log "wrote $file: $why"
  fi
}
write_drop_in /etc/containers/containers.conf.d/50-ember-ci.conf \
  "podman uses runc with explicit ulimits (crun fails on our hosts)" <<'CONF'
# Written by ember-ci's scripts/setup-host.sh.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
write_drop_in /etc/containers/registries.conf.d/50-ember-ci-short-names.conf \
  "short image names (centos:7) resolve on docker.io, as on Fedora/RHEL hosts" <<'CONF'
# Written by ember-ci's scripts/setup-host.sh: short names are looked up on
# docker.io, as vendors' scripts written for Docker expect.
unqualified-search-registries = ["docker.io"]
CONF

if ! podman image exists "$BASE_IMAGE"; then
  log "building $BASE_IMAGE with debootstrap (about a minute)"
  root=$(mktemp -d /var/tmp/ember-ci-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | podman import - "$BASE_IMAGE" >/dev/null
fi
log "ready: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), debootstrapped base $BASE_IMAGE"
