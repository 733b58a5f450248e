#!/usr/bin/env bash
# Runs the end-to-end scenarios on the local cluster, with the operator already deployed:
#   1. side by side, each in its own namespace: the lifecycle, backup, recovery, maintenance and plugin scenarios ($E2E_PARALLEL at once, default 2)
#      beside the other groups (TLS, own certificates, cert-manager, webhook, API validation, network policy),
#      one at a time;
#   2. then, one at a time, the scenarios that take the operator or the node away (disruptions, manager, and
#      the Helm chart's, whose operator stands in for the config/-deployed one), since they touch every
#      cluster on the test bed.
# Every line is prefixed with its group. Exits non-zero if any group failed; every group runs regardless.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
PARALLEL=${E2E_PARALLEL:-2}

# Built once, before the groups start: they then only run their test binaries. The plugin scenario runs
# kubectl-etcd from the debug build.
"$CARGO" test -p etcd-op-e2e --no-run
"$CARGO" build -p kubectl-etcd

# group NAME CARGO_TEST_ARGS...: runs one cargo test, its lines prefixed with [NAME]; its status is cargo's.
group() {
  local name=$1; shift
  "$CARGO" test -p etcd-op-e2e --no-fail-fast "$@" 2>&1 | sed -u "s/^/[$name] /"
}

status=0
# helm, for the chart's scenario in the last group, is built (once per version) while the first groups run:
# they wait on pods more than they compute.
helm_log=$(mktemp)
nice -n 10 hack/build.sh helm >"$helm_log" 2>&1 &
helm_build=$!
group lifecycle --test lifecycle --test backup --test recovery --test maintenance --test plugin -- --test-threads="$PARALLEL" &
lifecycle=$!
group scenarios --test tls --test own_certificates --test cert_manager --test webhook --test api_validation \
  --test network_policy -- --test-threads=1 &
scenarios=$!
wait "$lifecycle" || status=1
wait "$scenarios" || status=1
if wait "$helm_build"; then
  HELM=$(tail -1 "$helm_log")/helm
  export HELM
else
  sed 's/^/[helm build] /' "$helm_log"
  status=1
fi
rm -f "$helm_log"
group disruptions --test disruptions --test manager --test helm -- --test-threads=1 || status=1
exit "$status"
