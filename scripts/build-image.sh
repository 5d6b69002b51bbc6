#!/usr/bin/env bash
# Builds the ember-ci container image (tag: localhost/ember-ci:latest, or $1)
# from a release binary compiled on this host. BASE_IMAGE overrides the
# base (offline hosts: localhost/debian:bookworm from scripts/setup-host.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/ember-ci:latest}
base=${BASE_IMAGE:-docker.io/library/debian:bookworm}
# PROFILE=dev builds faster (tests); releases use the default.
profile=${PROFILE:-release}
cargo build --profile "$profile" --quiet --bin ember-ci
out_dir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")
mkdir -p target/image
cp "$out_dir/ember-ci" target/image/ember-ci
# .containerignore keeps the context to what the Containerfile copies.
podman build --layers --build-arg "BASE_IMAGE=$base" -t "$tag" -f Containerfile . | tail -n 3
echo "built $tag"
