#!/usr/bin/env bash
# Takes a node of the local cluster away and brings it back: the fault hook of the multi-node scenarios.
#   hack/node.sh stop NAME     its kubelet, kube-proxy, containers and containerd stop, as in a power loss; the
#                              control plane marks it not ready once its lease runs out
#   hack/node.sh delete NAME   stop, and its Node object deleted, as when a cloud removes a lost machine
#   hack/node.sh start NAME    its containerd, kubelet and kube-proxy start again on what it left on disk
#   hack/node.sh list          each node: name, address, zone, running or stopped
# The host's own node (the control plane's) cannot be taken away.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"
. "$HACK_DIR/lib/oci.sh"
. "$HACK_DIR/lib/images.sh"
. "$HACK_DIR/lib/nodes.sh"

usage() { die "usage: hack/node.sh stop|delete|start NAME, or hack/node.sh list"; }

# select_node NAME: node_vars for the node of that name, which must be one beside the host's.
select_node() {
  local name=$1 i
  [ "$name" = "$NODE_NAME" ] && die "$name runs the control plane; only the nodes beside it can be taken away"
  for i in $(extra_node_indexes); do
    if [ "$(node_name "$i")" = "$name" ]; then node_vars "$i"; return; fi
  done
  die "no node $name (nodes: $(list | awk '{ print $1 }' | tr '\n' ' '))"
}

list() {
  local i state
  for i in 1 $(extra_node_indexes); do
    node_vars "$i"
    if component_pid "kubelet$N_SUFFIX" >/dev/null; then state=running; else state=stopped; fi
    echo "$N_NAME $N_IP $N_ZONE $state"
  done
}

main() {
  [ "$(id -u)" = 0 ] || die "taking nodes away needs root"
  local action=${1:-} name=${2:-}
  [ "$action" = list ] && { list; return; }
  [ -n "$name" ] || usage
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster-up or cluster-down holds $STATE.lock"
  select_node "$name"
  case $action in
    stop)
      stop_node_processes
      log "node $N_NAME stopped"
      ;;
    delete)
      stop_node_processes
      "$("$HACK_DIR/build.sh" kubernetes)/kubectl" --kubeconfig "$STATE/kubeconfig" delete node "$N_NAME" \
        --ignore-not-found --wait=false >/dev/null
      log "node $N_NAME stopped and its Node object deleted"
      ;;
    start)
      K8S_BIN=$("$HACK_DIR/build.sh" kubernetes)
      component_pid "containerd$N_SUFFIX" >/dev/null || start_node_containerd
      component_pid "kubelet$N_SUFFIX" >/dev/null || start_node_agents
      log "node $N_NAME started"
      ;;
    *) usage ;;
  esac
}

main "$@"
