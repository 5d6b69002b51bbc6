#!/usr/bin/env bash
# Fetches Podman 5's quadlet generator (Debian 13's `podman` package) into
# /var/cache/ember-ci/quadlet and prints its path. Debian 12's Podman (4.3)
# has no generator; the trixie binary runs on bookworm. A private apt dir
# keeps the host's own sources and state untouched. Cached: reruns are free.
set -euo pipefail
cache=${QUADLET_CACHE:-/var/cache/ember-ci/quadlet}
bin=$cache/root/usr/libexec/podman/quadlet
if [ -x "$bin" ] && "$bin" -version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/debs"
echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir"
  -o "Dir::State::Status=/dev/null"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$cache/debs" && apt-get "${apt_opts[@]}" -qq download podman >&2)
rm -rf "$cache/root"
dpkg-deb -x "$(ls "$cache"/debs/podman_*.deb | tail -n 1)" "$cache/root"
"$bin" -version >&2
echo "$bin"
