#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster of real components on this machine (root, no container engine):
# containerd, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, a hostPath
# volume provisioner, and CoreDNS inside the cluster. Re-running while the cluster is healthy does nothing.
#   hack/cluster-up.sh            state in ${ETCD_OP_STATE:-/var/lib/etcd-op-local}
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"
. "$HACK_DIR/lib/oci.sh"
. "$HACK_DIR/lib/images.sh"

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
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    if ip -4 -o addr show | grep -v " $BRIDGE " | grep -q " ${cidr%.*.*}\."; then
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
  iptables -w -A "$OWN_CHAIN-FORWARD" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
  iptables -w -A "$OWN_CHAIN-FORWARD" -i "$BRIDGE" -j DROP
  iptables -w -A "$OWN_CHAIN-FORWARD" -o "$BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -j "$OWN_CHAIN-FORWARD"
  # The apiserver listens on all addresses (loopback for us, the bridge for pods); other links may not reach it.
  iptables -w -N "$OWN_CHAIN-INPUT"
  iptables -w -A "$OWN_CHAIN-INPUT" -i lo -j RETURN
  iptables -w -A "$OWN_CHAIN-INPUT" -i "$BRIDGE" -j RETURN
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

# write_kubeconfig FILE CERT_NAME: a kubeconfig with embedded credentials for one identity of $PKI.
write_kubeconfig() {
  local file=$1 cert=$2
  mkdir -p "$(dirname "$file")"
  cat >"$file" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: etcd-op-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
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
  "$PKI_BIN" "$PKI" "$NODE_NAME" "$NODE_IP" "$KUBERNETES_SERVICE_IP"
  write_kubeconfig "$STATE/kubeconfig" admin
  local cert
  for cert in kube-controller-manager kube-scheduler kubelet-client kube-proxy provisioner kube-router cert-manager; do
    write_kubeconfig "$STATE/kubeconfigs/$cert.kubeconfig" "$cert"
  done
}

start_containerd() {
  mkdir -p "$STATE/config" "$STATE/cni/net.d" "$STATE/containerd"
  cat >"$STATE/config/containerd.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE nothing may lower its OOM score below containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
TOML
  # One bridge for all pods; host-local hands out addresses, portmap serves hostPort.
  cat >"$STATE/cni/net.d/10-etcdop.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "etcdop",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  start_component containerd containerd --config "$STATE/config/containerd.toml"
  wait_until 30 containerd ctr --address "$CONTAINERD_SOCK" version
  log "importing images"
  images_import_all "$CONTAINERD_SOCK"
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
  mkdir -p "$KUBELET_ROOT" "$STATE/pod-logs" "$VOLUMES_DIR"
  cat >"$STATE/config/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host runs cgroup v1, which the kubelet only accepts when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PARENT
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
# No upstream resolvers: pods resolve cluster names only, and nothing leaves the machine.
resolvConf: ""
failSwapOn: false
# Lowering its own OOM score needs CAP_SYS_RESOURCE, which this host does not grant.
oomScoreAdj: 0
# Disk thresholds in bytes: a share of a large disk the host shares with other work (1% of 250 GiB is 2.5 GiB)
# would evict every pod while gigabytes are still free.
evictionHard: {memory.available: 100Mi, nodefs.available: 512Mi, nodefs.inodesFree: 1%, imagefs.available: 512Mi}
# Images cannot be pulled here, so they are never garbage-collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: true
serializeImagePulls: false
volumePluginDir: $KUBELET_ROOT/volume-plugins
podLogsDir: $STATE/pod-logs
rotateCertificates: false
serverTLSBootstrap: false
YAML
  start_component kubelet "$K8S_BIN/kubelet" --config "$STATE/config/kubelet.yaml" \
    --kubeconfig "$STATE/kubeconfigs/kubelet-client.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$KUBELET_ROOT"

  cat >"$STATE/config/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kubeconfigs/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts on the node's own address only.
nodePortAddresses: [primary]
oomScoreAdj: 0
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {syncPeriod: 30s, minSyncPeriod: 1s}
YAML
  start_component kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/config/kube-proxy.yaml"
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
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

main() {
  preflight
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster-up or cluster-down holds $STATE.lock"
  if healthy; then
    log "the cluster is already up"
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
  log "cluster up in $((SECONDS - started))s; logs in $STATE/logs"
  usage_line
}

# Sourcing this file (for debugging one step) defines the functions without starting anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
