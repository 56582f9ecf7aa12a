#!/usr/bin/env bash
# rls-target.sh: gatehouse as the TARGET_CMD of ../shared/bench/rls-peer.sh.
#
# rls-peer.sh exports REDIS_ADDR (its private redis-server), RLS_CONFIG_DIR
# (the envoyproxy/ratelimit-format YAML it gives the reference) and
# TARGET_ADDR. This writes a gatehouse config that serves those same files
# on TARGET_ADDR, in gatehouse's own mode (its response headers on, the
# local over-limit cache on: the defaults), and execs the binary, so that
# rls-peer.sh stops it by its PID:
#
#   TARGET_ADDR=127.0.0.1:19081 TARGET_CMD="scripts/ratelimit/rls-target.sh" ../shared/bench/rls-peer.sh
#
# Knobs: GATEHOUSE_BIN (default bin/gatehouse-bench, built here when absent),
#   GATEHOUSE_PPROF=host:port serves net/http/pprof from a binary built with
#   -tags pprof (scripts/ratelimit/profile.sh does both),
#   GATEHOUSE_EXTRA: more YAML appended under ratelimit: (indented two spaces).
set -euo pipefail
: "${REDIS_ADDR:?set by rls-peer.sh}" "${RLS_CONFIG_DIR:?set by rls-peer.sh}" "${TARGET_ADDR:?set by rls-peer.sh}"
cd "$(dirname "$0")/../.."
BIN=${GATEHOUSE_BIN:-bin/gatehouse-bench}
[[ -x $BIN ]] || go build -o "$BIN" ./cmd/gatehouse
dir=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-rls-target.XXXXXX")
cat >"$dir/gatehouse.yaml" <<YAML
apiVersion: gatehouse/v1
server:
  log: {level: warn}
  admin: {address: 127.0.0.1:0}
redis: {addresses: ["$REDIS_ADDR"]}
audit: {file: $dir/audit.log}
ratelimit:
  address: $TARGET_ADDR
  envoyConfigs: [$RLS_CONFIG_DIR]
${GATEHOUSE_EXTRA:-}
YAML
exec "$BIN" serve --config "$dir/gatehouse.yaml" --components ratelimit
