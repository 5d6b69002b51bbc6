#!/usr/bin/env bash
# PRE_RUN_1 of the LVM example: creates the "ember-volumes" volume group on a
# sparse 10 GiB file attached to a loop device. POST_RUN_1 in ./config removes
# it again.
set -euo pipefail

vg=ember-volumes
backing_file=/var/lib/ember-volumes.img

# The plugin container shares /etc/lvm with this host. Accept only loop
# devices, so LVM leaves the host's own disks alone, and do not wait for
# udev, which does not run in containers (lvcreate would hang).
# Works whether the options are commented out (Debian) or set (CentOS).
sed -i \
  -e 's/^\(\s*\)\(# \)\?global_filter = .*/\1global_filter = [ "a|^\/dev\/loop|", "r|.*|" ]/' \
  -e 's/^\(\s*\)\(# \)\?udev_sync = .*/\1udev_sync = 0/' \
  -e 's/^\(\s*\)\(# \)\?udev_rules = .*/\1udev_rules = 0/' \
  /etc/lvm/lvm.conf

# A job that was killed may have left its volume group behind.
if vgs "$vg" >/dev/null 2>&1; then
  echo "Removing volume group $vg left by an earlier job"
  vgremove --force "$vg"
fi
losetup --associated "$backing_file" --noheadings --output NAME |
  xargs --no-run-if-empty --max-args=1 losetup --detach

truncate --size 10G "$backing_file"
loop_device=$(losetup --show --find "$backing_file")
vgcreate "$vg" "$loop_device"
vgscan --cache
echo "Volume group $vg created on $loop_device"
