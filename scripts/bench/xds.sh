#!/usr/bin/env bash
# xds.sh: the xDS load scenario (run by `make bench`).
#
# bench/xds serves a ROUTES-route / CLUSTERS-cluster config (routes over 50
# hosts, so split into 50 route configurations by xds.routeSplit: auto) from
# gatehouse's xds component on 127.0.0.1, with the config's message limit
# (4MiB). For each mode — State of the World, Delta, and a mixed fleet
# (every other client Delta) — it connects CLIENTS Envoy-like ADS clients
# (one connection each), measures their initial sync (time, heap peak, heap
# per client), changes one route ROUNDS times and measures the time until
# all have it, changes one cluster's endpoints, then reconnects every client
# at once naming the versions it holds (a control plane restart or a move
# to another replica), checks it is sent nothing, waits until the server
# shows every node in sync, and changes a route again. Memory: the heap
# peak (server and in-process clients), and the server's own live heap per
# client after the sync and after the reconnect (split from the clients'
# by the heap profile). The ceiling is a no-op
# ADS server fanning the changed route configuration out to the same number
# of streams, in rounds interleaved with gatehouse's; figures are reported
# as ratios to it (the machine is shared: compare within a run).
#
# Defaults keep `make bench` short; the scale of issue 16 is
#   CLIENTS=1000 ROUTES=20000 CLUSTERS=2000 scripts/bench/xds.sh
# (about 3 minutes and 5 GB of RSS on a quiet 2-core machine; TIMEOUT=45m
# if it is loaded). EXTRA passes more flags to bench/xds (-cpuprofile,
# -cpuphase, -heapprofile).
#
# Everything runs in one process on loopback and stops with it (bounded by
# -timeout). Tunables: CLIENTS, ROUTES, CLUSTERS, ROUNDS, MODES, TIMEOUT.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(mktemp -d)/xdsbench"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/xds
read -r -a extra <<<"${EXTRA:-}"

"$bin" \
	-clients "${CLIENTS:-100}" \
	-routes "${ROUTES:-5000}" \
	-clusters "${CLUSTERS:-1000}" \
	-rounds "${ROUNDS:-5}" \
	-modes "${MODES:-sotw,delta,mixed}" \
	-timeout "${TIMEOUT:-300s}" "${extra[@]}"
