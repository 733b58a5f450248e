#!/usr/bin/env bash
# Builds the test bed's binaries from their Go modules into the cache, once per version.
#   hack/build.sh kubernetes|kubectl|etcd|etcd-old|etcd-next|coredns|kube-router|cert-manager|s3proxy|promtool|helm|all
# Prints the bin directory of each set it was asked for (for kubectl, the binary's path). A set is complete
# when its .complete stamp exists, so an interrupted build is redone, and a finished one never is.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

# The version the binaries report (kubectl version, the apiserver's /version), as a release build sets it.
kubernetes_ldflags() {
  local minor=${KUBE_VERSION#*.} ldflags="-s -w" pkg
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$ldflags"
}

build_kubernetes() {
  local tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/kubelet" ]; then
    echo "$KUBEBUILDER_ASSETS"; return
  fi
  local out="$CACHE_DIR/kubernetes-v$KUBE_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    log "building Kubernetes v$KUBE_VERSION (${tools[*]}); a cold build takes a while"
    mkdir -p "$out"
    (cd "$HACK_DIR/tools/kubernetes" &&
      go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out/" $(printf 'k8s.io/kubernetes/cmd/%s ' "${tools[@]}"))
    touch "$out/.complete"
  fi
  echo "$out"
}

# kubectl alone, for machines that need it only to render manifests: the full set's when that is built.
build_kubectl() {
  local full="$CACHE_DIR/kubernetes-v$KUBE_VERSION/bin"
  if [ -f "$full/.complete" ]; then echo "$full"/kubectl; return; fi
  local out="$CACHE_DIR/kubectl-v$KUBE_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    log "building kubectl v$KUBE_VERSION"
    mkdir -p "$out"
    (cd "$HACK_DIR/tools/kubernetes" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out/" k8s.io/kubernetes/cmd/kubectl)
    touch "$out/.complete"
  fi
  echo "$out/kubectl"
}

# etcd's server, etcdctl and etcdutl at one version, from the wrapper module of its minor release.
build_etcd_at() {
  local version=$1 out="$CACHE_DIR/etcd-v$1/bin"
  if [ ! -f "$out/.complete" ]; then
    local module="$HACK_DIR/tools/etcd-v${version%.*}"
    grep -q "go.etcd.io/etcd/server/v3 v$version" "$module/go.mod" || die "$module/go.mod does not pin etcd v$version"
    log "building etcd v$version"
    mkdir -p "$out"
    (cd "$module" &&
      go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 &&
      go build -trimpath -ldflags "-s -w" -o "$out/" go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)
    touch "$out/.complete"
  fi
  echo "$out"
}

build_etcd() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then echo "$KUBEBUILDER_ASSETS"; return; fi
  build_etcd_at "$ETCD_VERSION"
}

build_coredns() {
  local out="$CACHE_DIR/coredns-v$COREDNS_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    log "building CoreDNS v$COREDNS_VERSION"
    mkdir -p "$out"
    (cd "$HACK_DIR/tools/coredns" && go build -trimpath -ldflags "-s -w" -o "$out/coredns" github.com/coredns/coredns)
    touch "$out/.complete"
  fi
  echo "$out"
}

# kube-router's network policy controller: the local cluster's bridge CNI does not enforce NetworkPolicies.
build_kube_router() {
  local out="$CACHE_DIR/kube-router-v$KUBE_ROUTER_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    local module="$HACK_DIR/tools/kube-router"
    grep -q "github.com/cloudnativelabs/kube-router/v2 v$KUBE_ROUTER_VERSION" "$module/go.mod" ||
      die "$module/go.mod does not pin kube-router v$KUBE_ROUTER_VERSION"
    log "building kube-router v$KUBE_ROUTER_VERSION"
    mkdir -p "$out"
    (cd "$module" && go build -trimpath -ldflags "-s -w" -o "$out/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
    touch "$out/.complete"
  fi
  echo "$out"
}

# cert-manager's controller (CA and SelfSigned issuers) and CA injector. Their own binaries' modules are not
# served by the Go module proxy, so hack/tools/cert-manager holds mains of ours over cert-manager's main
# module; the cache is keyed by cert-manager's version and those mains. The CRDs come along from the module.
build_cert_manager() {
  local module="$HACK_DIR/tools/cert-manager" key
  grep -q "github.com/cert-manager/cert-manager v$CERT_MANAGER_VERSION" "$module/go.mod" ||
    die "$module/go.mod does not pin cert-manager v$CERT_MANAGER_VERSION"
  key=$(cat "$module"/*/main.go "$module/go.mod" | sha256sum | cut -c1-12)
  local out="$CACHE_DIR/cert-manager-v$CERT_MANAGER_VERSION-$key/bin"
  if [ ! -f "$out/.complete" ]; then
    log "building cert-manager v$CERT_MANAGER_VERSION (controller, cainjector)"
    mkdir -p "$out/crds"
    (cd "$module" &&
      go build -trimpath -ldflags "-s -w" -o "$out/cert-manager-controller" ./controller &&
      go build -trimpath -ldflags "-s -w" -o "$out/cert-manager-cainjector" ./cainjector &&
      cp "$(go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)"/deploy/crds/*.yaml "$out/crds/")
    touch "$out/.complete"
  fi
  echo "$out"
}

# s3proxy, the S3-compatible store of the backup scenarios: one jar with its dependencies from Maven Central,
# on its filesystem backend. Prints the jar's path.
build_s3proxy() {
  local out="$CACHE_DIR/s3proxy-v$S3PROXY_VERSION"
  if [ ! -f "$out/.complete" ]; then
    log "fetching s3proxy v$S3PROXY_VERSION from Maven Central"
    mkdir -p "$out"
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
      -DoutputDirectory="$out" -Dmdep.stripVersion=true >&2
    [ -f "$out/s3proxy-jar-with-dependencies.jar" ] || die "s3proxy's jar is not where Maven was asked to put it ($out)"
    touch "$out/.complete"
  fi
  echo "$out/s3proxy-jar-with-dependencies.jar"
}

build_promtool() {
  local out="$CACHE_DIR/promtool-v$PROMETHEUS_MODULE_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    log "building promtool (github.com/prometheus/prometheus v$PROMETHEUS_MODULE_VERSION)"
    mkdir -p "$out"
    (cd "$HACK_DIR/tools/promtool" && go build -trimpath -ldflags "-s -w" -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
    touch "$out/.complete"
  fi
  echo "$out"
}

# helm, which installs the chart in dist/chart in the e2e scenarios (Go module helm.sh/helm/v4).
build_helm() {
  local out="$CACHE_DIR/helm-v$HELM_VERSION/bin"
  if [ ! -f "$out/.complete" ]; then
    grep -q "helm.sh/helm/v4 v$HELM_VERSION" "$HACK_DIR/tools/helm/go.mod" ||
      die "$HACK_DIR/tools/helm/go.mod does not pin helm v$HELM_VERSION"
    log "building helm v$HELM_VERSION"
    mkdir -p "$out"
    (cd "$HACK_DIR/tools/helm" && go build -trimpath -ldflags "-s -w" -o "$out/helm" helm.sh/helm/v4/cmd/helm)
    touch "$out/.complete"
  fi
  echo "$out"
}

case "${1:-all}" in
  kubernetes) build_kubernetes ;;
  kubectl) build_kubectl ;;
  etcd) build_etcd ;;
  etcd-old) build_etcd_at "$ETCD_OLD_VERSION" ;;
  etcd-next) build_etcd_at "$ETCD_NEXT_VERSION" ;;
  coredns) build_coredns ;;
  kube-router) build_kube_router ;;
  cert-manager) build_cert_manager ;;
  s3proxy) build_s3proxy ;;
  promtool) build_promtool ;;
  helm) build_helm ;;
  all)
    build_kubernetes
    build_etcd_at "$ETCD_VERSION"; build_etcd_at "$ETCD_OLD_VERSION"; build_etcd_at "$ETCD_NEXT_VERSION"
    build_coredns
    build_kube_router
    build_cert_manager
    build_s3proxy
    build_promtool
    build_helm
    ;;
  *) die "usage: $0 kubernetes|kubectl|etcd|etcd-old|etcd-next|coredns|kube-router|cert-manager|s3proxy|promtool|helm|all" ;;
esac
