#!/usr/bin/env bash
# Starts cert-manager on the running local cluster, as users run it beside the operator: its CRDs, its
# controller and its CA injector, built from its Go modules (cached by version) and run on the host with a
# kubeconfig of their own (its webhook is not part of it: see hack/README.md). The scenarios that use
# cert-manager start it; the demo and the benchmarks run without it. Re-running while it runs does nothing;
# hack/cluster-down.sh stops it with the cluster.
#   hack/cert-manager.sh
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

WAIT_SECONDS=${ETCD_OP_WAIT_SECONDS:-120}

running() {
  local component
  for component in "${CERT_MANAGER_COMPONENTS[@]}"; do component_pid "$component" >/dev/null || return 1; done
}

main() {
  component_pid kube-apiserver >/dev/null || die "the local cluster is not running (hack/cluster-up.sh)"
  # The cluster's lock: never beside a cluster-up or cluster-down, and one start at a time.
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster-up, cluster-down or cert-manager start holds $STATE.lock"
  if running; then
    log "cert-manager is already running"
    return
  fi
  local bin k8s_bin
  bin=$("$HACK_DIR/build.sh" cert-manager)
  k8s_bin=$("$HACK_DIR/build.sh" kubernetes)
  local kubectl=("$k8s_bin/kubectl" --kubeconfig "$STATE/kubeconfig")
  "${kubectl[@]}" apply --server-side -f "$bin/crds/" >/dev/null
  "${kubectl[@]}" wait --for condition=Established --timeout "${WAIT_SECONDS}s" \
    crd/certificates.cert-manager.io crd/issuers.cert-manager.io crd/certificaterequests.cert-manager.io >/dev/null
  local kubeconfig="$STATE/kubeconfigs/cert-manager.kubeconfig"
  component_pid cert-manager-controller >/dev/null ||
    start_component cert-manager-controller "$bin/cert-manager-controller" --kubeconfig "$kubeconfig"
  component_pid cert-manager-cainjector >/dev/null ||
    start_component cert-manager-cainjector "$bin/cert-manager-cainjector" --kubeconfig "$kubeconfig"
  log "cert-manager started"
}

main "$@"
