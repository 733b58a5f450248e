#!/usr/bin/env bash
# Builds the operator, imports its image into the local cluster and deploys config/default with the image
# replaced by the local one, then waits for the Deployment to be Available.
#   hack/deploy-operator.sh        needs a running cluster (hack/cluster-up.sh)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

OPERATOR_IMAGE=${OPERATOR_IMAGE:-localhost/etcd-op:dev}
NAMESPACE=etcd-op-system
DEPLOYMENT=etcd-op-controller-manager
WAIT_SECONDS=${ETCD_OP_WAIT_SECONDS:-120}

main() {
  component_pid containerd >/dev/null || die "the local cluster is not running (hack/cluster-up.sh)"
  [ -d "$REPO_ROOT/config/default" ] || die "config/default does not exist"
  local k8s_bin; k8s_bin=$("$HACK_DIR/build.sh" kubernetes)
  if [ -z "${SKIP_BUILD:-}" ]; then
    "$HACK_DIR/deps.sh" build
    # OPERATOR_FEATURES=failpoints builds the test image, whose crash points the e2e crash test sets.
    (cd "$REPO_ROOT" && cargo build --release -p etcd-op ${OPERATOR_FEATURES:+--features "$OPERATOR_FEATURES"})
  fi
  local image_tar; image_tar=$(OPERATOR_IMAGE=$OPERATOR_IMAGE "$HACK_DIR/image-operator.sh")
  # A rebuilt image keeps its tag; naming its content in the pod template rolls the pods exactly when it changed.
  local image_id; image_id=$(sha256sum "$image_tar" | cut -c1-16)

  # The overlay lives in the state folder: it names this machine's paths and is not part of the repository.
  local overlay="$STATE/operator-overlay"
  mkdir -p "$overlay"
  # kustomize takes only relative paths to other kustomizations.
  local base; base=$(realpath --relative-to="$overlay" "$REPO_ROOT/config/default")
  cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $base
images:
- name: controller
  newName: ${OPERATOR_IMAGE%:*}
  newTag: ${OPERATOR_IMAGE##*:}
patches:
# The image exists only in this node's containerd: never try to pull it.
- target: {kind: Deployment, name: $DEPLOYMENT}
  patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: $DEPLOYMENT
    spec:
      template:
        metadata:
          annotations:
            local.etcd-op/image-content: "$image_id"
        spec:
          containers:
          - name: manager
            imagePullPolicy: IfNotPresent
YAML
  local kubectl=("$k8s_bin/kubectl" --kubeconfig "$STATE/kubeconfig")
  "${kubectl[@]}" apply --server-side --force-conflicts -k "$overlay"
  "${kubectl[@]}" -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout "${WAIT_SECONDS}s" ||
    die "the operator did not become available (kubectl -n $NAMESPACE logs deploy/$DEPLOYMENT)"
  "${kubectl[@]}" -n "$NAMESPACE" wait --for condition=Available "deployment/$DEPLOYMENT" --timeout "${WAIT_SECONDS}s"
  log "operator deployed as $OPERATOR_IMAGE"
}

main "$@"
