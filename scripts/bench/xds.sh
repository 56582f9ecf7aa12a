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
# The defaults are the scale of issue 16 — 1,000 clients, 20,000 routes,
# 2,000 clusters — and the run ends with a VERDICT line per mode against
# its goals (route change p50 < 1 s and max < 2 s, endpoint change < 1 s,
# build < 500 ms): about 2–3 minutes and 5 GB of RSS on a quiet 2-core
# machine (TIMEOUT=45m if it is loaded). A smaller run for a quick look:
#   CLIENTS=100 ROUTES=5000 CLUSTERS=1000 scripts/bench/xds.sh
# EXTRA passes more flags to bench/xds (-cpuprofile, -cpuphase,
# -heapprofile, -grpccodec).
#
# Everything runs in one process on loopback and stops with it (bounded by
# -timeout). Tunables: CLIENTS, ROUTES, CLUSTERS, ROUNDS, MODES, TIMEOUT.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(mktemp -d)/xdsbench"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/xds
read -r -a extra <<<"${EXTRA:-}"

out="$(dirname "$bin")/out"
"$bin" \
	-clients "${CLIENTS:-1000}" \
	-routes "${ROUTES:-20000}" \
	-clusters "${CLUSTERS:-2000}" \
	-rounds "${ROUNDS:-5}" \
	-modes "${MODES:-sotw,delta,mixed}" \
	-timeout "${TIMEOUT:-900s}" "${extra[@]}" | tee "$out"

# Issue 16's goals, per mode, from the RESULT lines.
awk '/^RESULT /{
	for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	ok = (f["route_change_p50_ms"] < 1000 && f["route_change_max_ms"] < 2000 && f["endpoint_change_ms"] < 1000 && f["build_p50_ms"] < 500) ? "MET" : "MISSED"
	printf "VERDICT mode=%s clients=%s routes=%s clusters=%s route change p50 %.0f ms max %.0f ms (goal < 1000 / < 2000), endpoint change %.0f ms (< 1000), build %.0f ms (< 500), server heap %.0f KB per client: %s\n",
		f["mode"], f["clients"], f["routes"], f["clusters"], f["route_change_p50_ms"], f["route_change_max_ms"], f["endpoint_change_ms"], f["build_p50_ms"], f["server_heap_per_client_kb"], ok
}' "$out"
