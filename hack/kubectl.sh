#!/usr/bin/env bash
# Prints the path of a kubectl fit for this repository's manifests (kustomize v5, server-side apply), and
# says on stderr which one it chose. In order:
#   1. $KUBECTL, when set (it must pass the same check);
#   2. $KUBEBUILDER_ASSETS/kubectl, or the kubectl of the pinned Kubernetes build when that is already cached;
#   3. `kubectl` on PATH, when its kustomize is v5 or newer;
#   4. kubectl alone, built from the pinned Kubernetes module into the cache (minutes, not the whole release).
# It never starts the build of the whole Kubernetes release.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# kustomize v5 is what config/ is written for (labels, patches); kubectl ships it from 1.27 on.
fit() {
  local version
  version=$("$1" version --client -o json 2>/dev/null | jq -r '.kustomizeVersion // empty') || return 1
  [[ $version =~ ^v([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 5 ]
}

describe() { "$1" version --client -o json 2>/dev/null | jq -r '"\(.clientVersion.gitVersion), kustomize \(.kustomizeVersion)"'; }

main() {
  if [ -n "${KUBECTL:-}" ]; then
    fit "$KUBECTL" || die "KUBECTL=$KUBECTL is not a kubectl with kustomize v5 or newer (kubectl 1.27+)"
    echo "$KUBECTL"; return
  fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && fit "$KUBEBUILDER_ASSETS/kubectl"; then
    echo "$KUBEBUILDER_ASSETS/kubectl"; return
  fi
  local cached="$CACHE_DIR/kubernetes-v$KUBE_VERSION/bin"
  if [ -f "$cached/.complete" ]; then
    echo "$cached/kubectl"; return
  fi
  local on_path
  if on_path=$(command -v kubectl) && fit "$on_path"; then
    log "using $on_path ($(describe "$on_path"))"
    echo "$on_path"; return
  fi
  [ -n "$on_path" ] && log "$on_path ($(describe "$on_path" || echo 'version unknown')) has no kustomize v5; building kubectl v$KUBE_VERSION"
  "$HACK_DIR/build.sh" kubectl
}

main "$@"
