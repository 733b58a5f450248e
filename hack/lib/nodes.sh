# The local cluster's nodes: what each runs (containerd, kubelet, kube-proxy) and how it is wired. Node 1 is the
# host itself, next to the control plane. Nodes 2..$MAX_NODES each live in a network namespace of their own, with
# their own containerd (root, state, socket), kubelet (root, cgroup, certificates), kube-proxy, pod range and
# zone, on a bridge of their own that routes between the nodes' pod ranges. Every node shares the host's
# filesystem, which local volumes do not show: a volume is bound to its node by the PersistentVolume's node
# affinity, as with local storage on a real cluster.
# Sourced after common.sh and cluster.sh, never run.

# node_vars INDEX: sets the N_* variables describing node INDEX.
node_vars() {
  local i=$1
  [[ $i =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$MAX_NODES" ] || die "node index $i is not within 1..$MAX_NODES"
  N_INDEX=$i
  N_ZONE=$(node_zone "$i")
  if [ "$i" = 1 ]; then
    N_NAME=$NODE_NAME N_IP=$NODE_IP N_DIR=$STATE N_SUFFIX="" N_NETNS=""
    N_POD_CIDR=$POD_CIDR N_GATEWAY=$NODE_IP N_POD_BRIDGE=$BRIDGE N_CGROUP=$CGROUP_PARENT
    N_KUBELET_CERT=kubelet N_KUBELET_KUBECONFIG=$STATE/kubeconfigs/kubelet-client.kubeconfig
    N_PROXY_KUBECONFIG=$STATE/kubeconfigs/kube-proxy.kubeconfig
    N_ENTER=()
  else
    N_NAME=$(node_name "$i") N_IP=$(node_ip "$i")
    N_DIR=$STATE/nodes/$N_NAME N_SUFFIX=@$N_NAME N_NETNS=$N_NAME
    N_POD_CIDR=10.89.$i.0/24 N_GATEWAY=10.89.$i.1 N_POD_BRIDGE=cbr0 N_CGROUP=$CGROUP_PARENT/$N_NAME
    N_KUBELET_CERT=kubelet-$N_NAME N_KUBELET_KUBECONFIG=$N_DIR/kubelet.kubeconfig
    N_PROXY_KUBECONFIG=$N_DIR/kube-proxy.kubeconfig
    N_ENTER=(nsenter "--net=/run/netns/$N_NETNS")
  fi
  N_SOCK=$N_DIR/containerd/containerd.sock
}

# in_node COMMAND...: runs COMMAND in the current node's network namespace (node 1: the host's). Only that
# namespace: the node shares the host's mounts, which its kubelet and containerd must both see.
in_node() { "${N_ENTER[@]}" "$@"; }

# The nodes beside the first that the cluster has (their folders), by index.
extra_node_indexes() {
  local dir name
  for dir in "$STATE"/nodes/"$NODE_NAME"-*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}
    echo "${name##*-}"
  done | sort -n
}

node_count() { echo $((1 + $(extra_node_indexes | wc -l))); }

# The containerd sockets of the nodes whose containerd runs.
containerd_sockets() {
  local i
  for i in 1 $(extra_node_indexes); do
    node_vars "$i"
    component_pid "containerd$N_SUFFIX" >/dev/null && echo "$N_SOCK"
  done
  return 0
}

# A link of its own from the host's node bridge into the node's namespace; the host routes the node's pod range
# through it. Nothing else on the host changes.
setup_node_network() {
  ip link add "$NODE_BRIDGE" type bridge 2>/dev/null || true
  ip addr replace "$NODE_GATEWAY/${NODE_LINK_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  ip netns add "$N_NETNS" 2>/dev/null || true
  local host_end=etcdop-v$N_INDEX
  if ! ip link show "$host_end" >/dev/null 2>&1; then
    ip link add "$host_end" type veth peer name eth0 netns "$N_NETNS"
  fi
  ip link set "$host_end" master "$NODE_BRIDGE" up
  ip -n "$N_NETNS" link set lo up
  ip -n "$N_NETNS" addr replace "$N_IP/${NODE_LINK_CIDR#*/}" dev eth0
  ip -n "$N_NETNS" link set eth0 up
  ip -n "$N_NETNS" route replace default via "$NODE_GATEWAY"
  ip route replace "$N_POD_CIDR" via "$N_IP" dev "$NODE_BRIDGE"
  # /proc/sys/net belongs to the namespace of whoever writes it.
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
}

setup_node_cgroups() {
  local root dir
  for root in $(cgroup_roots); do
    [ "$root" = /sys/fs/cgroup/unified ] && continue
    dir=$root
    local part
    for part in ${N_CGROUP//\// }; do
      dir=$dir/$part
      mkdir -p "$dir"
      # A new v1 cpuset cgroup starts with no CPUs and no memory nodes.
      if [ -f "$root/cpuset.cpus" ] && [ ! -f "$root/cgroup.controllers" ] && [ ! -s "$dir/cpuset.cpus" ]; then
        cat "$root/cpuset.cpus" >"$dir/cpuset.cpus"
        cat "$root/cpuset.mems" >"$dir/cpuset.mems"
      fi
    done
  done
}

start_node_containerd() {
  mkdir -p "$N_DIR/config" "$N_DIR/cni/net.d" "$N_DIR/containerd"
  cat >"$N_DIR/config/containerd.toml" <<TOML
version = 2
root = "$N_DIR/containerd/root"
state = "$N_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$N_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$N_DIR/containerd/opt"

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
        Root = "$N_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N_DIR/cni/net.d"
    max_conf_num = 1
TOML
  # One bridge for the node's pods; host-local hands out addresses, portmap serves hostPort.
  cat >"$N_DIR/cni/net.d/10-etcdop.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "etcdop",
  "plugins": [
    {
      "type": "bridge", "bridge": "$N_POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$N_DIR/cni/networks",
        "ranges": [[{"subnet": "$N_POD_CIDR", "gateway": "$N_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  start_component "containerd$N_SUFFIX" "${N_ENTER[@]}" containerd --config "$N_DIR/config/containerd.toml"
  wait_until 30 "containerd of $N_NAME" ctr --address "$N_SOCK" version
}

# import_node_images: the test bed's images, and the operator's when it has been built.
import_node_images() {
  log "importing images into $N_NAME"
  images_import_all "$N_SOCK"
  local operator_tar=$CACHE_DIR/images/etcd-op-dev.tar
  if [ "$N_INDEX" != 1 ] && [ -f "$operator_tar" ]; then
    ctr --address "$N_SOCK" -n k8s.io images import "$operator_tar" >/dev/null
  fi
  return 0
}

start_node_agents() {
  mkdir -p "$N_DIR/kubelet" "$N_DIR/pod-logs" "$N_DIR/config"
  cat >"$N_DIR/config/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host runs cgroup v1, which the kubelet only accepts when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$N_CGROUP
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://$N_SOCK
address: $N_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/$N_KUBELET_CERT.crt
tlsPrivateKeyFile: $PKI/$N_KUBELET_CERT.key
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
volumePluginDir: $N_DIR/kubelet/volume-plugins
podLogsDir: $N_DIR/pod-logs
rotateCertificates: false
serverTLSBootstrap: false
YAML
  start_component "kubelet$N_SUFFIX" "${N_ENTER[@]}" "$K8S_BIN/kubelet" --config "$N_DIR/config/kubelet.yaml" \
    --kubeconfig "$N_KUBELET_KUBECONFIG" --hostname-override "$N_NAME" --node-ip "$N_IP" \
    --root-dir "$N_DIR/kubelet" --node-labels "topology.kubernetes.io/zone=$N_ZONE"

  cat >"$N_DIR/config/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $N_PROXY_KUBECONFIG}
mode: iptables
hostnameOverride: $N_NAME
clusterCIDR: $CLUSTER_CIDR
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
  start_component "kube-proxy$N_SUFFIX" "${N_ENTER[@]}" "$K8S_BIN/kube-proxy" --config "$N_DIR/config/kube-proxy.yaml"
}

# Pids of the processes in the current node's cgroup tree (its containers and their sandboxes).
node_cgroup_pids() {
  local root
  for root in $(cgroup_roots); do
    [ -d "$root/$N_CGROUP" ] && { find "$root/$N_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }
  done | sort -un
}

node_shim_pids() { shim_pids_of "$N_SOCK"; }

# stop_node_processes: the node's agents and containers, as when it loses power. Its state stays on disk.
stop_node_processes() {
  stop_component "kubelet$N_SUFFIX" 15
  stop_component "kube-proxy$N_SUFFIX" &
  kill_containers node_cgroup_pids node_shim_pids
  stop_component "containerd$N_SUFFIX"
  wait
}
