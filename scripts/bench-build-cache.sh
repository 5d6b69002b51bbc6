#!/usr/bin/env bash
# Benchmark of the layer cache a job's build gets: builds a Dockerfile shaped
# like Ember-CSI's (a heavy package layer, then COPY of the source) the way a
# job does (nested `podman build --layers --network=host` in a sandbox whose
# /var/lib/containers is a slot store on the host), cold, then warm after a
# source-only change, and prints both times and their ratio.
# Usage: bench-build-cache.sh [SANDBOX_IMAGE]
# (default: the newest localhost/ember-ci-sandbox image; run a job or
# `ember-ci run` once to build it). Needs root Podman and the Debian mirror.
set -euo pipefail

image=${1:-$(podman images --sort created --format '{{.Repository}}:{{.Tag}}' localhost/ember-ci-sandbox | head -n 1)}
[ -n "$image" ] || { echo "no localhost/ember-ci-sandbox image: run one ember-ci job first" >&2; exit 1; }

work=$(mktemp -d /var/tmp/ember-ci-bench.XXXXXX)
sandbox="ember-ci-bench-$$"
cleanup() {
  podman rm --force --time 0 "$sandbox" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/store" "$work/src"
cat > "$work/src/Dockerfile" <<'EOF'
FROM docker.io/library/debian:bookworm
# The dependency layer: what Ember-CSI's image installs before its source.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-dev gcc libssl-dev open-iscsi lvm2 \
      multipath-tools sg3-utils e2fsprogs xfsprogs \
 && rm -rf /var/lib/apt/lists/*
COPY ember_csi /opt/ember_csi
CMD ["python3", "-m", "compileall", "/opt/ember_csi"]
EOF
mkdir -p "$work/src/ember_csi"
echo 'VERSION = "1"' > "$work/src/ember_csi/__init__.py"

podman run -d --name "$sandbox" --privileged --label ember-ci.bench=1 \
  -v "$work/store:/var/lib/containers" \
  -v /var/lib/containers/storage:/var/lib/host-store:ro \
  -v "$work/src:/src" "$image" sleep infinity >/dev/null

build() {
  local started ended
  started=$(date +%s.%N)
  podman exec "$sandbox" podman build --network=host --layers -t localhost/bench:slot0 /src \
    > "$work/build-$1.log" 2>&1 || { cat "$work/build-$1.log" >&2; exit 1; }
  ended=$(date +%s.%N)
  awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }'
}

cold=$(build cold)
echo 'VERSION = "2"  # a source-only change' > "$work/src/ember_csi/__init__.py"
warm=$(build warm)
grep -q "Using cache" "$work/build-warm.log" || { echo "the warm build used no cache" >&2; exit 1; }
awk -v cold="$cold" -v warm="$warm" 'BEGIN {
  printf "cold build: %.1f s\nwarm build after a source-only change: %.1f s\nratio: %.0fx\n",
    cold, warm, cold / warm }'
