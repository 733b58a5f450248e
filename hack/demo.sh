#!/usr/bin/env bash
# Creates the sample EtcdCluster on the local cluster (with the operator deployed) and shows it Ready.
#   hack/demo.sh      after hack/cluster-up.sh and hack/deploy-operator.sh (`make demo` runs all three)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

STATE=${ETCD_OP_STATE:-/var/lib/etcd-op-local}
WAIT_SECONDS=${ETCD_OP_WAIT_SECONDS:-300}
kubectl=("$("$HACK_DIR/build.sh" kubernetes)/kubectl" --kubeconfig "$STATE/kubeconfig")

"${kubectl[@]}" apply -k "$REPO_ROOT/config/samples"
log "waiting (at most ${WAIT_SECONDS}s each) for etcdcluster/etcdcluster-sample: Available, 3 ready members, nothing in progress"
if ! { "${kubectl[@]}" wait --for=condition=Available etcdcluster/etcdcluster-sample --timeout "${WAIT_SECONDS}s" &&
  "${kubectl[@]}" wait --for=jsonpath='{.status.readyMembers}'=3 etcdcluster/etcdcluster-sample --timeout "${WAIT_SECONDS}s" &&
  "${kubectl[@]}" wait --for=condition=Progressing=false etcdcluster/etcdcluster-sample --timeout "${WAIT_SECONDS}s"; }; then
  "${kubectl[@]}" describe etcdcluster/etcdcluster-sample || true
  "${kubectl[@]}" -n etcd-op-system logs deploy/etcd-op-controller-manager --tail 50 || true
  die "the sample cluster did not become Available"
fi
"${kubectl[@]}" get etcdcluster -o wide
"${kubectl[@]}" get pods,pvc,svc -l app.kubernetes.io/instance=etcdcluster-sample
endpoint=$("${kubectl[@]}" get svc etcdcluster-sample-client -o jsonpath='{.spec.clusterIP}')
# The sample speaks mutual TLS: etcdctl presents the user's client certificate from the cluster's Secret.
certs="$STATE/demo-client-tls"
mkdir -p "$certs" && chmod 700 "$certs"
for key in ca.crt tls.crt tls.key; do
  "${kubectl[@]}" get secret etcdcluster-sample-client-tls -o jsonpath="{.data.${key//./\\.}}" | base64 -d >"$certs/$key"
done
etcdctl=("$("$HACK_DIR/build.sh" etcd)/etcdctl" --endpoints "https://$endpoint:2379" --cacert "$certs/ca.crt"
  --cert "$certs/tls.crt" --key "$certs/tls.key")
"${etcdctl[@]}" put /demo/hello world >/dev/null
"${etcdctl[@]}" -w table member list
cat <<TXT

The sample cluster is Available, with mutual TLS. Try:
  export KUBECONFIG=$STATE/kubeconfig
  kubectl get etcd
  kubectl scale etcdcluster/etcdcluster-sample --replicas=5
  ${etcdctl[*]} get /demo/hello
TXT
