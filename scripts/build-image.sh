#!/usr/bin/env bash
# Builds the ember-ci container image.
#
#   scripts/build-image.sh [--tag T]                 compile inside the image build
#   scripts/build-image.sh --host-binary [--tag T]   compile on this host, inject
#   scripts/build-image.sh --binary PATH [--tag T]   inject an existing binary
#
# The tag defaults to localhost/ember-ci:latest. Base images are build
# arguments with fully qualified names: RUST_IMAGE (compile stage) and
# BASE_IMAGE (runtime, docker.io/library/debian:bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=localhost/ember-ci:latest
binary=
host_binary=
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --host-binary) host_binary=1; shift ;;
    *) echo "usage: $0 [--tag T] [--host-binary | --binary PATH]" >&2; exit 2 ;;
  esac
done
args=(--layers --format docker -t "$tag" -f Containerfile
  --build-arg "RUST_IMAGE=${RUST_IMAGE:-docker.io/library/rust:1-bookworm}"
  --build-arg "BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm}")
if [ -n "$host_binary" ]; then
  # PROFILE=dev builds faster; releases use the default.
  profile=${PROFILE:-release}
  cargo build --profile "$profile" --quiet --bin ember-ci
  binary=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")/ember-ci
fi
if [ -n "$binary" ]; then
  mkdir -p target/image
  # .containerignore keeps the context to what the Containerfile copies.
  cp "$binary" target/image/ember-ci
  args+=(--target with-host-binary)
fi
podman build "${args[@]}" . | tail -n 3
echo "built $tag"
