#!/usr/bin/env bash
# Demo sanity suite: stands in for csi-sanity where it cannot be downloaded.
# Connects to the CSI endpoint and checks the plugin's answer.
set -euo pipefail
endpoint=${1:-127.0.0.1:50051}
host=${endpoint%:*} port=${endpoint##*:}
echo "Running demo sanity checks against $endpoint"
exec 3<>"/dev/tcp/$host/$port"
read -r -t 10 answer <&3 || { echo "FAIL: no answer from the plugin"; exit 1; }
echo "plugin answered: $answer"
case "$answer" in
  "ember-csi-demo OK "*) echo "PASS: 1 of 1 checks passed" ;;
  *) echo "FAIL: unexpected answer"; exit 1 ;;
esac
