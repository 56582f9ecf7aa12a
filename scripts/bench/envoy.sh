#!/usr/bin/env bash
# envoy.sh: what a hop through gatehouse costs, through a real Envoy 1.40
# (make bench runs it).
#
# One Envoy (envoy/bootstrap.yaml, filled in; --concurrency $ENVOY_WORKERS)
# serves two listeners in front of the same upstream (loadgen null -api http):
#   (a) direct: a static listener with only the router: Envoy → upstream;
#   (b) chain:  the listener gatehouse configures over ADS, on a route with
#       the full chain: ext_proc header hygiene, ext_authz with an RS256
#       JWT (TOKENS hot tokens, round-robin), the rate limit on a private
#       redis-server (a quota never reached), then the router.
# The same load generator (bench/loadgen http, HTTP/1.1) drives both, in one
# run and interleaved (a b a b ... for ROUNDS): at a fixed moderate RATE
# (open loop: latency counts from the scheduled start) and at saturation
# (closed loop, CONCURRENCY). Prints every RESULT line and a SUMMARY: the
# throughput ratio b/a at saturation and the p50/p90/p99 added per request.
# Anchor: Istio publishes 2.65 ms added at p90 at 1,000 rps for its sidecar.
#
# Knobs: DURATION (8s) RATE (1000) CONCURRENCY (32) ROUNDS (2) TOKENS (1000)
#        ENVOY_WORKERS (1)
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8s}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-32}
ROUNDS=${ROUNDS:-2}
TOKENS=${TOKENS:-1000}
ENVOY_WORKERS=${ENVOY_WORKERS:-1}

work=$(mktemp -d -t gatehouse-envoy-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # port what
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "envoy bench: $2 did not listen on $1" >&2
	exit 1
}

ENVOY=$(scripts/testenv.sh envoy)
scripts/testenv.sh install >/dev/null
go build -o "$work/loadgen" ./bench/loadgen
go build -o "$work/gatehouse" ./cmd/gatehouse
"$work/loadgen" mint-jwt -n "$TOKENS" -jwks-out "$work/jwks.json" -tokens-out "$work/tokens.txt" \
	-iss https://bench.invalid -aud gatehouse >/dev/null

redis_port=$(free_port); up_port=$(free_port); admin_port=$(free_port); authz_port=$(free_port)
extproc_port=$(free_port); rls_port=$(free_port); xds_port=$(free_port)
envoy_admin=$(free_port); direct_port=$(free_port); chain_port=$(free_port)

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
"$work/loadgen" null -api http -addr "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" redis-server
wait_port "$up_port" upstream

cat >"$work/gatehouse.yaml" <<YAML
apiVersion: gatehouse/v1
server:
  log: {level: warn, format: json}
  admin: {address: 127.0.0.1:$admin_port}
redis: {addresses: ["127.0.0.1:$redis_port"]}
audit: {file: $work/audit.log}
authz:
  address: 127.0.0.1:$authz_port
  jwt:
    issuers:
      - name: bench
        issuer: https://bench.invalid
        audiences: [gatehouse]
        algorithms: [RS256]
        tierClaim: plan
        jwksFile: $work/jwks.json
extproc: {address: 127.0.0.1:$extproc_port}
ratelimit:
  address: 127.0.0.1:$rls_port
  default: [{requests: 1000000000, per: second}]
xds: {address: 127.0.0.1:$xds_port}
listeners: [{name: chain, address: "127.0.0.1:$chain_port"}]
clusters: [{name: upstream, endpoints: [{address: "127.0.0.1:$up_port"}]}]
routes:
  - id: chain
    match: {prefix: /}
    cluster: upstream
    authz: {jwt: {issuers: [bench]}}
    extproc: {hygiene: {}}
YAML
"$work/gatehouse" serve --config "$work/gatehouse.yaml" >/dev/null 2>"$work/gatehouse.log" &
pids+=($!)
gatehouse_pid=$!
wait_port "$xds_port" gatehouse

"$work/loadgen" envoy-bootstrap -node envoy-bench-1 -xds "127.0.0.1:$xds_port" -admin "127.0.0.1:$envoy_admin" \
	-direct "127.0.0.1:$direct_port" -upstream "127.0.0.1:$up_port" >"$work/bootstrap.yaml"
"$ENVOY" -c "$work/bootstrap.yaml" --disable-hot-restart --concurrency "$ENVOY_WORKERS" --log-level warning \
	>"$work/envoy.log" 2>&1 &
pids+=($!)
envoy_pid=$!
wait_port "$direct_port" "Envoy (direct listener)"
wait_port "$chain_port" "Envoy (listener from gatehouse)"

load() { # port [extra loadgen flags]
	local port=$1
	shift
	"$work/loadgen" http -addr "127.0.0.1:$port" -path /bench -tokens "$work/tokens.txt" \
		-duration "$DURATION" -warmup 1s -wait 20s -timeout 5s "$@" | grep '^RESULT'
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
# cpu_ticks PID: user+system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)
check() { # result name
	local errs non200
	errs=$(echo "$1" | field err)
	non200=$(echo "$1" | grep -o ' status_[0-9]*=[0-9]*' | grep -v status_200 || true)
	if [ "${errs:-0}" != "0" ] || [ -n "$non200" ]; then
		echo "envoy bench: $2: errors=$errs${non200:+, answers$non200}; the figures are not of the allow path" >&2
		tail -5 "$work/gatehouse.log" >&2
		exit 1
	fi
}

echo "envoy bench: Envoy $("$ENVOY" --version | sed -n 's|.*version: [0-9a-f]*/\([0-9.]*\)/.*|\1|p'), $ENVOY_WORKERS worker(s), $(nproc) cores shared by everything"
fixed=()
sat=()
for round in $(seq "$ROUNDS"); do
	for mode in fixed sat; do
		for target in direct chain; do
			port=$direct_port
			[ "$target" = chain ] && port=$chain_port
			if [ "$mode" = fixed ]; then
				r=$(load "$port" -rate "$RATE" -concurrency 256)
			else
				e0=$(cpu_ticks "$envoy_pid"); g0=$(cpu_ticks "$gatehouse_pid"); r0=$(cpu_ticks "$redis_pid")
				r=$(load "$port" -concurrency "$CONCURRENCY")
				e1=$(cpu_ticks "$envoy_pid"); g1=$(cpu_ticks "$gatehouse_pid"); r1=$(cpu_ticks "$redis_pid")
				# CPU per answered request, µs, over the run (warm-up included).
				n=$(echo "$r" | field n)
				r="$r envoy_cpu_us=$(((e1 - e0) * 1000000 / ticks / n)) gatehouse_cpu_us=$(((g1 - g0) * 1000000 / ticks / n)) redis_cpu_us=$(((r1 - r0) * 1000000 / ticks / n))"
			fi
			check "$r" "$target $mode"
			echo "envoy round $round $mode $target: $r"
			if [ "$mode" = fixed ]; then fixed+=("$target $r"); else sat+=("$target $r"); fi
		done
	done
done

python3 - "$RATE" "$CONCURRENCY" <<PY
import re, statistics, sys
rate, conc = sys.argv[1], sys.argv[2]
def parse(lines):
    out = {"direct": [], "chain": []}
    for l in lines:
        target, rest = l.split(" ", 1)
        out[target].append({k: float(v) for k, v in re.findall(r"(rps|p50_ms|p90_ms|p99_ms|envoy_cpu_us|gatehouse_cpu_us|redis_cpu_us)=([0-9.]+)", rest)})
    return out
def med(rows, k):
    return statistics.median(r[k] for r in rows)
fixed = parse("""$(printf '%s\n' "${fixed[@]}")""".strip().split("\n"))
sat = parse("""$(printf '%s\n' "${sat[@]}")""".strip().split("\n"))
def added(d, k):
    return med(d["chain"], k) - med(d["direct"], k)
print(f"SUMMARY envoy fixed {rate} rps: added p50 {added(fixed,'p50_ms'):.2f} ms, p90 {added(fixed,'p90_ms'):.2f} ms, p99 {added(fixed,'p99_ms'):.2f} ms "
      f"(direct p90 {med(fixed['direct'],'p90_ms'):.2f} ms, chain p90 {med(fixed['chain'],'p90_ms'):.2f} ms; Istio's sidecar anchor: +2.65 ms at p90, 1,000 rps)")
print(f"SUMMARY envoy saturation c={conc}: chain {med(sat['chain'],'rps'):.0f} rps vs direct {med(sat['direct'],'rps'):.0f} rps, ratio {med(sat['chain'],'rps')/med(sat['direct'],'rps'):.2f}; "
      f"added p50 {added(sat,'p50_ms'):.2f} ms, p99 {added(sat,'p99_ms'):.2f} ms")
print(f"SUMMARY envoy CPU per request at saturation (µs, incl. warm-up): direct: envoy {med(sat['direct'],'envoy_cpu_us'):.0f}; "
      f"chain: envoy {med(sat['chain'],'envoy_cpu_us'):.0f}, gatehouse {med(sat['chain'],'gatehouse_cpu_us'):.0f}, redis {med(sat['chain'],'redis_cpu_us'):.0f}")
PY
