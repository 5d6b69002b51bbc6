#!/usr/bin/env bash
# A vendor's host in a container: a Debian 13 (trixie) rootfs with systemd as
# PID 1 and Podman 5, made by debootstrap from the Debian package registry
# and imported as a Podman image. Prints the image name. Cached: the rootfs
# under /var/cache/ember-ci/systemd-host, the image by a tag that hashes
# this script, so an edit here rebuilds it and reruns are free.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${SYSTEMD_HOST_CACHE:-/var/cache/ember-ci/systemd-host}
packages=systemd,systemd-sysv,dbus,podman,crun,conmon,netavark,aardvark-dns,ca-certificates,curl,iproute2,procps
tag=localhost/ember-ci-systemd-host:trixie-$(sha256sum "$0" | cut -c1-12)
if podman image exists "$tag"; then
  echo "$tag"
  exit 0
fi
log() { printf '[systemd-host] %s\n' "$*" >&2; }
rootfs=$cache/rootfs
if [ ! -x "$rootfs/usr/bin/podman" ] || [ "$(cat "$cache/packages" 2>/dev/null)" != "$packages" ]; then
  log "debootstrap trixie with $packages (one time, about a minute)"
  rm -rf "$rootfs.tmp"
  mkdir -p "$cache"
  debootstrap --variant=minbase --include="$packages" trixie "$rootfs.tmp" \
    http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
  echo "$packages" >"$cache/packages"
fi
# systemd in a container: no gettys, no udev, no time sync; the image store
# is a volume (overlay on overlay would fail), runc-free crun is Podman 5's
# default; containers.conf keeps ulimits explicit as on our hosts.
tar -C "$rootfs" -c . | podman import --quiet \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' - "$tag.tmp" >/dev/null
podman build --quiet -t "$tag" -f - . >/dev/null <<EOF
FROM $tag.tmp
RUN systemctl mask getty.target console-getty.service systemd-udevd.service \
      systemd-timesyncd.service systemd-networkd.service systemd-resolved.service \
      systemd-logind.service systemd-modules-load.service >/dev/null 2>&1; \
    rm -f /etc/machine-id && systemd-machine-id-setup >/dev/null; \
    mkdir -p /etc/containers/containers.conf.d; \
    printf '%s\n' '[containers]' 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' \
      >/etc/containers/containers.conf.d/50-ember-ci.conf
VOLUME /var/lib/containers
EOF
podman rmi "$tag.tmp" >/dev/null
log "built $tag"
echo "$tag"
