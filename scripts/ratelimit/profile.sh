#!/usr/bin/env bash
# profile.sh: CPU and allocation profiles of gatehouse's rate
# limit service under the load of the side-by-side benchmark (the scenario
# of ../shared/bench/rls-peer.sh and scripts/bench/ratelimit.sh): a private
# redis-server, gatehouse serving the envoyproxy/ratelimit-format config of
# scripts/ratelimit/rls-target.sh, closed-loop load at concurrency 64 over 4
# connections, 10,000 subjects, one descriptor (tier, subject) a request.
#
# For each mix (ok: tier free, 100000/s per subject; over: tier tight,
# 1/hour per subject) it writes to OUT (default /tmp/gatehouse-rlprof):
#   cpu-<mix>.pprof     CPU profile of the server over the measured run
#   allocs-<mix>.pprof  allocation profile (use -sample_index=alloc_space or
#                       alloc_objects and -diff_base allocs-<mix>-before.pprof)
#   <mix>.txt           the load's result and `go tool pprof -top` of both
# Then: go tool pprof -http=: bin/gatehouse-pprof OUT/cpu-ok.pprof
#
# Knobs: DURATION=15s CONCURRENCY=64 KEYS=10000 CONNS=4 MIXES="ok over" OUT=...
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-15s}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-10000}
CONNS=${CONNS:-4}
MIXES=${MIXES:-ok over}
OUT=${OUT:-/tmp/gatehouse-rlprof}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-rlprof.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[ratelimit-profile] $*" >&2; }
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		busy "$p" || { echo "$p"; return; }
	done
	log "no free port"; exit 1
}
wait_port() { # port pid name
	for _ in $(seq 200); do
		busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || { log "$3 exited early"; exit 1; }
		sleep 0.05
	done
	log "$3 did not listen on $1"; exit 1
}

log "building gatehouse (-tags pprof) and the load generator"
go build -tags pprof -o bin/gatehouse-pprof ./cmd/gatehouse
go build -o "$WORK/loadgen" ./bench/loadgen

# The rate limit config of rls-peer.sh (`rls-peer.sh config`).
export RLS_CONFIG_DIR=$WORK/config
mkdir -p "$RLS_CONFIG_DIR"
cp ratelimit/testdata/peer-envoy.yaml "$RLS_CONFIG_DIR/gatehouse_subject.yaml"

port=$(free_port)
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$port" "$!" redis
export REDIS_ADDR=127.0.0.1:$port TARGET_ADDR=127.0.0.1:$(free_port)
PPROF=127.0.0.1:$(free_port)
GATEHOUSE_BIN=bin/gatehouse-pprof GATEHOUSE_PPROF=$PPROF scripts/ratelimit/rls-target.sh >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
wait_port "${TARGET_ADDR##*:}" "$!" gatehouse
wait_port "${PPROF##*:}" "${PIDS[-1]}" pprof

secs=${DURATION%s}
for mix in $MIXES; do
	tier=free
	[[ $mix == over ]] && tier=tight
	redis-cli -p "$port" FLUSHALL >/dev/null
	curl -fsS "http://$PPROF/debug/pprof/allocs" -o "$OUT/allocs-$mix-before.pprof"
	# The profile starts after a second of warm-up and ends before the load.
	(sleep 1; curl -fsS "http://$PPROF/debug/pprof/profile?seconds=$((secs - 2))" -o "$OUT/cpu-$mix.pprof") &
	prof=$!
	"$WORK/loadgen" rls -addr "$TARGET_ADDR" -domain gatehouse_subject -tier "$tier" -keys "$KEYS" \
		-concurrency "$CONCURRENCY" -conns "$CONNS" -duration "$DURATION" -warmup 1s -wait 15s >"$OUT/$mix.txt"
	wait "$prof"
	curl -fsS "http://$PPROF/debug/pprof/allocs" -o "$OUT/allocs-$mix.pprof"
	{
		echo
		go tool pprof -top -nodecount=40 bin/gatehouse-pprof "$OUT/cpu-$mix.pprof" 2>/dev/null
		echo
		go tool pprof -top -nodecount=30 -sample_index=alloc_objects -diff_base "$OUT/allocs-$mix-before.pprof" \
			bin/gatehouse-pprof "$OUT/allocs-$mix.pprof" 2>/dev/null
	} >>"$OUT/$mix.txt"
	log "$mix: $(grep '^RESULT' "$OUT/$mix.txt")"
done
log "profiles in $OUT"
