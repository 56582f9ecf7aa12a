#!/usr/bin/env bash
# xds.sh: the xDS load scenario (run by `make bench`).
#
# bench/xds serves a 5,000-route / 1,000-cluster config from gatehouse's
# xds component on 127.0.0.1, connects 100 Envoy-like ADS clients (State of
# the World, then Delta; one connection each), changes one route and
# measures the time until all 100 have it, then changes one cluster's
# endpoints to show what Delta sends. The ceiling is a no-op ADS server
# fanning the same route table out to the same number of streams, measured
# in the same run; figures are reported as ratios to it.
#
# Everything runs in one process on loopback and stops with it (bounded by
# -timeout). Tunables: CLIENTS, ROUTES, CLUSTERS, ROUNDS, MODES.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(mktemp -d)/xdsbench"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/xds

"$bin" \
	-clients "${CLIENTS:-100}" \
	-routes "${ROUTES:-5000}" \
	-clusters "${CLUSTERS:-1000}" \
	-rounds "${ROUNDS:-5}" \
	-modes "${MODES:-sotw,delta}" \
	-timeout "${TIMEOUT:-300s}"
