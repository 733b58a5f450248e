#!/usr/bin/env bash
# Starts s3proxy, a real S3-compatible store (filesystem backend, AWS signatures checked), on the running local
# cluster's node address, where the operator's pods and the tests on the host both reach it. The backup
# scenarios start it; the demo and the benchmarks run without it. Re-running while it runs does nothing;
# hack/cluster-down.sh stops it and removes its data with the cluster's state.
#   hack/s3proxy.sh
# Writes $STATE/s3proxy/env: the endpoint, the bucket and a key pair made at its first start.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/cluster.sh"

WAIT_SECONDS=${ETCD_OP_WAIT_SECONDS:-120}
DIR=$STATE/s3proxy

answers() {
  # Any HTTP answer will do: an anonymous request is refused, which shows the server is up.
  curl -s -o /dev/null --max-time 2 "http://$NODE_IP:$S3PROXY_PORT/"
}

write_settings() {
  mkdir -p "$DIR/data/$S3PROXY_BUCKET"
  [ -f "$DIR/env" ] && return
  local access secret
  access=etcdop$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
  secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
  umask 077
  cat >"$DIR/s3proxy.conf" <<CONF
s3proxy.endpoint=http://$NODE_IP:$S3PROXY_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$access
s3proxy.credential=$secret
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DIR/data
CONF
  cat >"$DIR/env.tmp" <<ENV
S3_ENDPOINT=http://$NODE_IP:$S3PROXY_PORT
S3_BUCKET=$S3PROXY_BUCKET
S3_REGION=us-east-1
S3_ACCESS_KEY_ID=$access
S3_SECRET_ACCESS_KEY=$secret
S3_DATA_DIR=$DIR/data
ENV
  mv "$DIR/env.tmp" "$DIR/env"
}

main() {
  component_pid kube-apiserver >/dev/null || die "the local cluster is not running (hack/cluster-up.sh)"
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster-up, cluster-down or add-on start holds $STATE.lock"
  if component_pid s3proxy >/dev/null; then
    log "s3proxy is already running"
    return
  fi
  local jar
  jar=$("$HACK_DIR/build.sh" s3proxy)
  write_settings
  start_component s3proxy java -Xmx256m -jar "$jar" --properties "$DIR/s3proxy.conf"
  # Alive is enough here: until the started process has become java, its command line is still this
  # script's, which component_pid would not take for s3proxy.
  local i pid
  pid=$(<"$(pid_file s3proxy)")
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    if answers; then
      log "s3proxy answers at http://$NODE_IP:$S3PROXY_PORT (settings in $DIR/env)"
      return
    fi
    kill -0 "$pid" 2>/dev/null || die "s3proxy stopped: see $STATE/logs/s3proxy.log"
    sleep 0.5
  done
  die "s3proxy did not answer within ${WAIT_SECONDS}s: see $STATE/logs/s3proxy.log"
}

main "$@"
