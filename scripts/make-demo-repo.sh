#!/usr/bin/env bash
# Creates a bare git repository standing in for embercsi/ember-csi, holding
# the demo plugin at refs/pull/129/head (serves and passes the demo sanity
# suite) and a broken copy at refs/pull/130/head (dies at start), like the
# long-lived test PRs upstream. Prints "<pr> <sha>" for both refs.
# Usage: make-demo-repo.sh BARE_REPO_DIR
set -euo pipefail
repo=${1:?usage: make-demo-repo.sh BARE_REPO_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git_q() { git -C "$work" -c user.name=ember-ci -c user.email=ember-ci@localhost "$@" >/dev/null; }
git init -q -b main "$work"
cp -r "$here/examples/demo/plugin/." "$work/"
git_q add -A
git_q commit -q -m "Demo Ember-CSI plugin"
ok_sha=$(git -C "$work" rev-parse HEAD)
sed -i '0,/^\$| = 1;/s//$| = 1;\ndie "Traceback: ImportError: cannot import name DemoDriver (broken on purpose)\\n";/' \
  "$work/ember-csi-demo"
git_q commit -q -am "Break the plugin on purpose (test PR #130)"
broken_sha=$(git -C "$work" rev-parse HEAD)

rm -rf "$repo"
mkdir -p "$(dirname "$repo")"
git init -q --bare "$repo"
git -C "$work" push -q "$repo" "$ok_sha:refs/heads/main" "$ok_sha:refs/pull/129/head" \
  "$broken_sha:refs/pull/130/head"
echo "129 $ok_sha"
echo "130 $broken_sha"
