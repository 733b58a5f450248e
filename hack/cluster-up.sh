#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster of real components on this machine (root, no container engine):
# containerd, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, a hostPath
# volume provisioner, and CoreDNS inside the cluster. Re-running while the cluster is healthy does nothing.
#   hack/cluster-up.sh [--nodes N]   state in ${ETCD_OP_STATE:-/var/lib/etcd-op-local}
# With N > 1 (or ETCD_OP_NODES), nodes 2..N join beside the host's node, each in a network namespace of its own
# (hack/lib/nodes.sh), in zones, with node-local volumes; on a running cluster, the missing ones join it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"
. "$HACK_DIR/lib/oci.sh"
. "$HACK_DIR/lib/images.sh"
. "$HACK_DIR/lib/nodes.sh"

WAIT_SECONDS=${ETCD_OP_WAIT_SECONDS:-120}

usage_line() {
  echo "export KUBECONFIG=$STATE/kubeconfig"
}

preflight() {
  [ "$(id -u)" = 0 ] || die "the cluster needs root (network, mounts, cgroups)"
  "$HACK_DIR/deps.sh" cluster
  [ -d /proc/sys/net/bridge ] ||
    die "bridge netfilter is not available: load it with 'modprobe br_netfilter' (the kernel needs CONFIG_BRIDGE_NETFILTER)"
  local cidr
  for cidr in "$POD_CIDR" 10.89.0.0/16 "$NODE_LINK_CIDR" "$SERVICE_CIDR"; do
    if ip -4 -o addr show | grep -v " $BRIDGE \| $NODE_BRIDGE " | grep -q " ${cidr%.*.*}\."; then
      die "the host already has an address in $cidr"
    fi
  done
}

healthy() {
  local component
  for component in "${COMPONENTS[@]}"; do component_pid "$component" >/dev/null || return 1; done
  admin_curl /readyz >/dev/null
}

# The pki tool is cached by its source, so a warm start never waits for cargo (or for its build lock).
build_pki() {
  local key out
  key=$(cat "$HACK_DIR/pki/Cargo.toml" "$HACK_DIR/pki/src/"*.rs | sha256sum | cut -c1-12)
  out="$CACHE_DIR/tools/pki-$key/pki"
  if [ ! -x "$out" ]; then
    # A target folder of its own: the tests start the cluster from inside `cargo test`, which holds the lock
    # of the workspace's target folder.
    local target="$CACHE_DIR/pki-target"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$target cargo build --quiet --release -p pki) >&2
    mkdir -p "$(dirname "$out")"
    cp "$target/release/pki" "$out.tmp" && mv "$out.tmp" "$out"
  fi
  echo "$out"
}

build_everything() {
  K8S_BIN=$("$HACK_DIR/build.sh" kubernetes)
  ETCD_BIN=$("$HACK_DIR/build.sh" etcd)
  "$HACK_DIR/build.sh" etcd-old >/dev/null
  "$HACK_DIR/build.sh" etcd-next >/dev/null
  "$HACK_DIR/build.sh" coredns >/dev/null
  PKI_BIN=$(build_pki)
  PROVISIONER_BIN=$(build_tool provisioner)
  KUBE_ROUTER_BIN=$("$HACK_DIR/build.sh" kube-router)
  images_build_all >/dev/null
}

setup_host_network() {
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # The bridge exists before any pod, because it carries the node's address.
  ip link add "$BRIDGE" type bridge 2>/dev/null || true
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pods talk to each other and to the node only: nothing is forwarded between the bridge and other links.
  iptables -w -N "$OWN_CHAIN-FORWARD"
  # The other nodes' links (hack/lib/nodes.sh) are on a bridge of their own, routed to and from this one.
  local from to
  for from in "$BRIDGE" "$NODE_BRIDGE"; do
    for to in "$BRIDGE" "$NODE_BRIDGE"; do
      iptables -w -A "$OWN_CHAIN-FORWARD" -i "$from" -o "$to" -j RETURN
    done
  done
  for from in "$BRIDGE" "$NODE_BRIDGE"; do
    iptables -w -A "$OWN_CHAIN-FORWARD" -i "$from" -j DROP
    iptables -w -A "$OWN_CHAIN-FORWARD" -o "$from" -j DROP
  done
  iptables -w -I FORWARD 1 -j "$OWN_CHAIN-FORWARD"
  # The apiserver listens on all addresses (loopback for us, the bridge for pods); other links may not reach it.
  iptables -w -N "$OWN_CHAIN-INPUT"
  iptables -w -A "$OWN_CHAIN-INPUT" -i lo -j RETURN
  iptables -w -A "$OWN_CHAIN-INPUT" -i "$BRIDGE" -j RETURN
  iptables -w -A "$OWN_CHAIN-INPUT" -i "$NODE_BRIDGE" -j RETURN
  iptables -w -A "$OWN_CHAIN-INPUT" -p tcp --dport "$APISERVER_PORT" -j DROP
  iptables -w -I INPUT 1 -j "$OWN_CHAIN-INPUT"
}

setup_cgroups() {
  local root
  for root in $(cgroup_roots); do
    # Under cgroup v1 the kubelet and runc manage the v2 side of a hybrid host themselves.
    [ "$root" = /sys/fs/cgroup/unified ] && continue
    mkdir -p "$root/$CGROUP_PARENT"
    # A new v1 cpuset cgroup starts with no CPUs and no memory nodes.
    if [ -f "$root/cpuset.cpus" ] && [ ! -f "$root/cgroup.controllers" ]; then
      cat "$root/cpuset.cpus" >"$root/$CGROUP_PARENT/cpuset.cpus"
      cat "$root/cpuset.mems" >"$root/$CGROUP_PARENT/cpuset.mems"
    fi
  done
}

# write_kubeconfig FILE CERT_NAME [SERVER_ADDRESS]: a kubeconfig with embedded credentials for one identity of
# $PKI, for the apiserver at SERVER_ADDRESS (default loopback).
write_kubeconfig() {
  local file=$1 cert=$2 server=${3:-127.0.0.1}
  mkdir -p "$(dirname "$file")"
  cat >"$file" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: etcd-op-local
  cluster:
    server: https://$server:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: etcd-op-local
  context: {cluster: etcd-op-local, user: $cert}
current-context: etcd-op-local
YAML
  chmod 0600 "$file"
}

write_credentials() {
  local more_nodes=() i
  # Every node the cluster may grow to has its kubelet's certificates from the start.
  for ((i = 2; i <= MAX_NODES; i++)); do more_nodes+=("$(node_name "$i")=$(node_ip "$i")"); done
  "$PKI_BIN" "$PKI" "$NODE_NAME" "$NODE_IP" "$KUBERNETES_SERVICE_IP" "${more_nodes[@]}"
  write_kubeconfig "$STATE/kubeconfig" admin
  local cert
  for cert in kube-controller-manager kube-scheduler kubelet-client kube-proxy provisioner kube-router cert-manager; do
    write_kubeconfig "$STATE/kubeconfigs/$cert.kubeconfig" "$cert"
  done
}

start_containerd() {
  node_vars 1
  start_node_containerd
  import_node_images
}

start_etcd() {
  start_component etcd "$ETCD_BIN/etcd" --name apiserver-etcd --data-dir "$STATE/etcd" \
    --listen-client-urls "https://127.0.0.1:$APISERVER_ETCD_PORT" --advertise-client-urls "https://127.0.0.1:$APISERVER_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((APISERVER_ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((APISERVER_ETCD_PORT + 1))" \
    --initial-cluster "apiserver-etcd=http://127.0.0.1:$((APISERVER_ETCD_PORT + 1))" \
    --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" --client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
    --log-level warn
  wait_until 30 "etcd" curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
    --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$APISERVER_ETCD_PORT/health"
}

start_control_plane() {
  start_component kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "https://127.0.0.1:$APISERVER_ETCD_PORT" --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false \
    --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra-
  wait_until "$WAIT_SECONDS" "the apiserver to be ready" admin_curl /readyz

  start_component kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false \
    --profiling=false
  start_component kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
  node_vars 1
  start_node_agents
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

# node_ready [NAME]: the node (default the host's) is Ready.
node_ready() {
  [ "$(kubectl_admin get node "${1:-$NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

install_addons() {
  kubectl_admin apply --server-side -f "$HACK_DIR/manifests/" >/dev/null
  # After its RBAC binding exists, so it does not start with a burst of forbidden errors.
  start_component provisioner "$PROVISIONER_BIN" --kubeconfig "$STATE/kubeconfigs/provisioner.kubeconfig" \
    --root "$VOLUMES_DIR"
  wait_until "$WAIT_SECONDS" "node $NODE_NAME to be Ready" node_ready
  kubectl_admin -n kube-system rollout status deployment/coredns --timeout "${WAIT_SECONDS}s" >/dev/null ||
    die "CoreDNS did not become ready (kubectl -n kube-system describe pods -l k8s-app=kube-dns)"
  start_network_policy_controller
}

# kube-router's firewall alone: the bridge CNI and kube-proxy keep routing and services. It keeps its rules
# in KUBE-ROUTER-* and KUBE-NWPLCY-* chains and KUBE-SRC-/KUBE-DST- ipsets, which cleanup removes.
start_network_policy_controller() {
  start_component kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$STATE/kubeconfigs/kube-router.kubeconfig" \
    --hostname-override "$NODE_NAME" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --service-cluster-ip-range "$SERVICE_CIDR" --health-port=0 --metrics-port=0
  wait_until "$WAIT_SECONDS" "kube-router's network policy chains" iptables -w -t filter -S KUBE-ROUTER-FORWARD
}

# add_node INDEX: starts node INDEX beside the running control plane.
add_node() {
  node_vars "$1"
  [ -f "$PKI/$N_KUBELET_CERT.crt" ] ||
    die "this cluster was started without certificates for $N_NAME: start it again (hack/cluster-down.sh first)"
  log "adding node $N_NAME ($N_IP, pods $N_POD_CIDR, $N_ZONE)"
  mkdir -p "$N_DIR"
  write_kubeconfig "$N_KUBELET_KUBECONFIG" "kubelet-client-$N_NAME" "$NODE_IP"
  write_kubeconfig "$N_PROXY_KUBECONFIG" kube-proxy "$NODE_IP"
  setup_node_network
  setup_node_cgroups
  start_node_containerd
  import_node_images
  start_node_agents
}

# grow_to N: nodes 2..N run (started if they are not), each Ready; volumes are then node-local by default.
grow_to() {
  local want=$1 i
  [ "$want" -le 1 ] && return 0
  for ((i = 2; i <= want; i++)); do
    node_vars "$i"
    component_pid "kubelet$N_SUFFIX" >/dev/null || add_node "$i"
  done
  for ((i = 2; i <= want; i++)); do
    wait_until "$WAIT_SECONDS" "node $(node_name "$i") to be Ready" node_ready "$(node_name "$i")"
  done
  # A volume bound where its first pod was scheduled, and kept on that node: local storage.
  kubectl_admin annotate --overwrite storageclass standard storageclass.kubernetes.io/is-default-class=false >/dev/null
  kubectl_admin annotate --overwrite storageclass local storageclass.kubernetes.io/is-default-class=true >/dev/null
  log "$want nodes Ready; the default StorageClass is local (node-local volumes)"
}

main() {
  local nodes=${ETCD_OP_NODES:-1}
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 || die "--nodes needs a count" ;;
      --nodes=*) nodes=${1#--nodes=}; shift ;;
      *) die "unknown argument $1 (usage: hack/cluster-up.sh [--nodes N])" ;;
    esac
  done
  [[ $nodes =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le "$MAX_NODES" ] ||
    die "--nodes takes a count from 1 to $MAX_NODES"
  preflight
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster-up or cluster-down holds $STATE.lock"
  if healthy; then
    log "the cluster is already up"
    K8S_BIN=$("$HACK_DIR/build.sh" kubernetes)
    grow_to "$nodes"
    usage_line
    return
  fi
  local started=$SECONDS
  build_everything
  log "removing what an earlier cluster left behind"
  cleanup_cluster
  mkdir -p "$STATE"
  setup_host_network
  setup_cgroups
  write_credentials
  start_containerd
  start_etcd
  start_control_plane
  start_node
  install_addons
  grow_to "$nodes"
  log "cluster up in $((SECONDS - started))s; logs in $STATE/logs"
  usage_line
}

# Sourcing this file (for debugging one step) defines the functions without starting anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
