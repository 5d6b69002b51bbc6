#!/usr/bin/env bash
# A real local registry standing in for docker.io and quay.io on hosts that
# cannot reach them: Debian's docker-registry (the CNCF distribution
# registry) on 127.0.0.1:5000, made a mirror of both through a drop-in under
# /etc/containers/registries.conf.d/, so images keep the names a vendor's
# host uses (docker.io/library/debian:bookworm) and an empty image store
# pulls exactly as it would there.
# Usage: local-registry.sh start | stop | seed IMAGE PUBLIC_NAME
#   seed pushes local IMAGE so that PUBLIC_NAME (docker.io/... or quay.io/...)
#   resolves through the mirror.
set -euo pipefail

ADDR=127.0.0.1:5000
STATE_DIR=${EMBER_CI_REGISTRY_DIR:-/var/lib/ember-ci-registry}
DROP_IN=/etc/containers/registries.conf.d/50-ember-ci-local-mirror.conf
LOCK=/run/ember-ci-registry.lock

log() { printf '[local-registry] %s\n' "$*"; }

is_up() { curl -fsS -o /dev/null "http://$ADDR/v2/" 2>/dev/null; }

write_config() {
  mkdir -p "$STATE_DIR/storage"
  cat >"$STATE_DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/storage
  delete:
    enabled: true
http:
  addr: $ADDR
CONF
}

write_drop_in() {
  local want
  want=$(cat <<CONF
# Written by ember-ci's scripts/local-registry.sh: a local registry mirrors
# docker.io and quay.io (tests and offline hosts). Remove this file to stop.
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$ADDR"
insecure = true

[[registry]]
prefix = "quay.io"
location = "quay.io"
[[registry.mirror]]
location = "$ADDR"
insecure = true

[[registry]]
location = "$ADDR"
insecure = true
CONF
)
  if [ "$(cat "$DROP_IN" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$(dirname "$DROP_IN")"
    printf '%s\n' "$want" >"$DROP_IN"
    log "wrote $DROP_IN: docker.io and quay.io are mirrored by $ADDR"
  fi
}

start() {
  exec 9>"$LOCK"
  flock 9
  write_drop_in
  if is_up; then return 0; fi
  command -v docker-registry >/dev/null \
    || { echo "docker-registry is not installed: apt-get install docker-registry" >&2; exit 1; }
  write_config
  # 9>&-: the daemon must not inherit the lock, or every later flock waits
  # for it forever.
  setsid docker-registry serve "$STATE_DIR/config.yml" \
    >>"$STATE_DIR/registry.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE_DIR/pid"
  for _ in $(seq 50); do
    is_up && { log "serving on $ADDR (storage $STATE_DIR/storage)"; return 0; }
    sleep 0.1
  done
  echo "docker-registry did not answer on $ADDR; see $STATE_DIR/registry.log" >&2
  exit 1
}

stop() {
  local pid
  pid=$(cat "$STATE_DIR/pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  rm -f "$STATE_DIR/pid"
}

seed() {
  local image=$1 public=$2 path
  path=${public#*/}
  case "$public" in
    docker.io/*|quay.io/*) ;;
    *) echo "seed: $public is not a docker.io or quay.io name" >&2; exit 2 ;;
  esac
  start
  if curl -fsS -o /dev/null "http://$ADDR/v2/${path%:*}/manifests/${path##*:}"; then
    return 0
  fi
  podman push --quiet --tls-verify=false "$image" "$ADDR/$path"
  log "seeded $public (from $image)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  seed) [ $# -eq 3 ] || { echo "usage: $0 seed IMAGE PUBLIC_NAME" >&2; exit 2; }; seed "$2" "$3" ;;
  *) echo "usage: $0 start | stop | seed IMAGE PUBLIC_NAME" >&2; exit 2 ;;
esac
