#!/usr/bin/env bash
# ratelimit.sh: the rate limit service's load scenario (make bench).
#
# Starts, on loopback, a private redis-server, the no-op RLS server (the
# ceiling of gRPC on this machine), the reference envoyproxy/ratelimit (built
# from the Go module proxy at the version go.mod pins) and gatehouse, both
# on that one Redis with the same envoyproxy/ratelimit-format config. Then,
# interleaved, REPS times: the same closed-loop load on each (CONCURRENCY
# in flight, KEYS distinct subjects, 2 descriptors a request: tier + subject
# under a per-second or per-hour limit, and daily + subject under a daily
# quota), in two mixes:
#   ok    tier "free"  (100000/second per subject): almost every answer OK
#   over  tier "tight" (1/hour per subject): almost every answer OVER_LIMIT
# plus gatehouse's own domain (one route + tier + subject descriptor whose
# tier has the same two limits: gatehouse's way of stacking quotas). Redis is flushed before every run. Everything started here is
# stopped on exit, even on failure.
#
# Prints per-run lines, then medians with ratios to the no-op ceiling and to
# the reference, and a verdict per mix: target ≥ 1.5x the reference's
# throughput with a p99 no worse.
#
# Knobs: DURATION=10s WARMUP=2s REPS=3 CONCURRENCY=64 KEYS=10000 CONNS=4
#   LOADGEN=path of a loadgen binary (default: built from ./bench/loadgen)
#   REF_BIN=path of envoyproxy/ratelimit's service_cmd (default: go install,
#   cached in $GATEHOUSE_BENCH_CACHE, default ~/.cache/gatehouse-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
REPS=${REPS:-3}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-10000}
CONNS=${CONNS:-4}
REF_MODULE=github.com/envoyproxy/ratelimit
REF_VERSION=$(go list -m -f '{{.Version}}' "$REF_MODULE")
CACHE=${GATEHOUSE_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-bench}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-ratelimit.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[ratelimit-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		busy "$p" || { echo "$p"; return; }
	done
	die "no free port"
}
wait_port() { # port pid name
	for _ in $(seq 200); do
		busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || die "$3 exited early: $(tail -5 "$WORK/$3.log" 2>/dev/null)"
		sleep 0.05
	done
	die "$3 did not listen on 127.0.0.1:$1"
}
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

# --- binaries -----------------------------------------------------------
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || scripts/testenv.sh install
log "building gatehouse and the load generator"
go build -o "$WORK/gatehouse" ./cmd/gatehouse
if [[ -z ${LOADGEN:-} ]]; then
	go build -o "$WORK/loadgen" ./bench/loadgen
	LOADGEN=$WORK/loadgen
fi
REF_BIN=${REF_BIN:-$CACHE/ratelimit-$REF_VERSION/service_cmd}
if [[ ! -x $REF_BIN ]]; then
	log "building $REF_MODULE@$REF_VERSION from the module proxy (once; cached in $(dirname "$REF_BIN"))"
	mkdir -p "$(dirname "$REF_BIN")"
	if ! (cd "$WORK" && GOFLAGS= GOBIN=$(dirname "$REF_BIN") go install "$REF_MODULE/src/service_cmd@$REF_VERSION") >"$WORK/ref-build.log" 2>&1; then
		log "cannot build the reference ($(tail -1 "$WORK/ref-build.log")); measuring without it"
		REF_BIN=""
	fi
fi

# --- config: the same limits for both servers ----------------------------
mkdir -p "$WORK/runtime/rls/config"
cp ratelimit/testdata/bench-envoy.yaml "$WORK/runtime/rls/config/bench.yaml"

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" \
	--logfile "$WORK/redis.log" --protected-mode yes >/dev/null 2>&1 &
PIDS+=($!)
REDIS_PID=$!
wait_port "$REDIS_PORT" "$REDIS_PID" redis

NULL_PORT=$(free_port)
"$LOADGEN" null -api rls -addr "127.0.0.1:$NULL_PORT" >"$WORK/null.log" 2>&1 &
PIDS+=($!)
NULL_PID=$!
wait_port "$NULL_PORT" "$NULL_PID" null

GH_PORT=$(free_port)
cat >"$WORK/gatehouse.yaml" <<EOF
apiVersion: gatehouse/v1
server:
  log: {level: warn}
  admin: {address: 127.0.0.1:0}
redis: {addresses: ["127.0.0.1:$REDIS_PORT"]}
audit: {file: $WORK/audit.log}
ratelimit:
  address: 127.0.0.1:$GH_PORT
  envoyConfigs: [$WORK/runtime/rls/config]
  tiers:
    free: [{requests: 100000, per: second}, {requests: 1000000000, per: day}]
    tight: [{requests: 1, per: hour}, {requests: 1000000000, per: day}]
routes:
  - id: orders
    match: {prefix: /}
EOF
"$WORK/gatehouse" serve --config "$WORK/gatehouse.yaml" --components ratelimit >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
GH_PID=$!
wait_port "$GH_PORT" "$GH_PID" gatehouse

TARGETS="null gatehouse gatehouse-native"
REF_PORT=""
if [[ -n $REF_BIN ]]; then
	REF_PORT=$(free_port)
	env USE_STATSD=false DISABLE_STATS=true LOG_LEVEL=warn BACKEND_TYPE=redis \
		REDIS_SOCKET_TYPE=tcp REDIS_TYPE=SINGLE REDIS_URL="127.0.0.1:$REDIS_PORT" \
		RUNTIME_ROOT="$WORK/runtime" RUNTIME_SUBDIRECTORY=rls RUNTIME_APPDIRECTORY=config RUNTIME_WATCH_ROOT=false \
		HOST=127.0.0.1 PORT="$(free_port)" GRPC_HOST=127.0.0.1 GRPC_PORT="$REF_PORT" \
		DEBUG_HOST=127.0.0.1 DEBUG_PORT="$(free_port)" \
		"$REF_BIN" >"$WORK/reference.log" 2>&1 &
	PIDS+=($!)
	REF_PID=$!
	wait_port "$REF_PORT" "$REF_PID" reference
	TARGETS="null reference gatehouse gatehouse-native"
fi

# --- runs -----------------------------------------------------------------
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
RESULTS=$WORK/results.tsv
: >"$RESULTS"
log "load: concurrency $CONCURRENCY, $KEYS subjects, $CONNS connections, $DURATION per run (+$WARMUP warm-up), $REPS reps; targets: $TARGETS"
printf '%-5s %-17s %3s %9s %8s %8s %6s %8s\n' mix target rep rps p50_ms p99_ms over% cpu_us/r
for rep in $(seq "$REPS"); do
	for mix in ok over; do
		tier=free
		[[ $mix == over ]] && tier=tight
		# Rotate the order so that no target always runs first.
		set -- $TARGETS
		order=("${@:$(((rep - 1) % $# + 1))}" "${@:1:$(((rep - 1) % $#))}")
		for target in "${order[@]}"; do
			args=(-domain bench -tier-key tier -second-key daily -tier "$tier")
			case $target in
			null) addr=127.0.0.1:$NULL_PORT pid=$NULL_PID ;;
			reference) addr=127.0.0.1:$REF_PORT pid=$REF_PID ;;
			gatehouse) addr=127.0.0.1:$GH_PORT pid=$GH_PID ;;
			gatehouse-native) addr=127.0.0.1:$GH_PORT pid=$GH_PID args=(-domain gatehouse -route orders -tier-key tier -tier "$tier") ;;
			esac
			redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
			c0=$(ticks "$pid")
			out=$("$LOADGEN" rls -addr "$addr" "${args[@]}" -keys "$KEYS" -concurrency "$CONCURRENCY" -conns "$CONNS" \
				-duration "$DURATION" -warmup "$WARMUP" -wait 15s -seed "$rep") || die "$target: $out"
			c1=$(ticks "$pid")
			res=$(grep '^RESULT ' <<<"$out") || die "$target: no RESULT line: $out"
			n=$(field n "$res")
			ok=$(field ok "$res"); ok=${ok:-0}
			ov=$(field over "$res"); ov=${ov:-0}
			secs=$(field secs "$res")
			warm=${WARMUP%s}
			# Server CPU per request over warm-up and measured time.
			cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v n="$n" -v s="$secs" -v w="$warm" \
				'BEGIN{ if (n>0) printf "%.1f", (b-a)/t*1e6/(n*(s+w)/s); else print "-" }')
			overpct=$(awk -v o="$ov" -v n="$n" 'BEGIN{ if (n>0) printf "%.1f", 100*o/n; else print 0 }')
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mix" "$target" "$rep" "$(field rps "$res")" "$(field p50_ms "$res")" \
				"$(field p99_ms "$res")" "$overpct" "$cpu" "$(field err "$res")" >>"$RESULTS"
			printf '%-5s %-17s %3s %9.0f %8s %8s %6s %8s\n' "$mix" "$target" "$rep" "$(field rps "$res")" "$(field p50_ms "$res")" \
				"$(field p99_ms "$res")" "$overpct" "$cpu"
		done
	done
done

# --- medians and ratios ---------------------------------------------------
echo
echo "median of $REPS runs, $DURATION each; x_null = throughput / no-op server's, x_ref = throughput / envoyproxy/ratelimit's ($REF_VERSION)"
awk -F'\t' '
function med(k, c,   i, j, a, t, m) { m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, c, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
{ k = $1 SUBSEP $2; n[k]++; for (c = 4; c <= 9; c++) v[k, c, n[k]] = $c; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
END {
	printf "%-5s %-17s %9s %8s %8s %6s %9s %7s %7s\n", "mix", "target", "rps", "p50_ms", "p99_ms", "over%", "cpu_us/r", "x_null", "x_ref"
	for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP)
		r[k] = med(k, 4); p99[k] = med(k, 6) }
	for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP)
		nk = p[1] SUBSEP "null"; rk = p[1] SUBSEP "reference"
		xn = (r[nk] > 0) ? sprintf("%.2f", r[k] / r[nk]) : "-"
		xr = (rk in r && r[rk] > 0) ? sprintf("%.2f", r[k] / r[rk]) : "-"
		printf "%-5s %-17s %9.0f %8.3f %8.3f %6.1f %9.1f %7s %7s\n", p[1], p[2], r[k], med(k, 5), p99[k], med(k, 7), med(k, 8), xn, xr }
	split("ok over", ms, " ")
	for (i = 1; i <= 2; i++) { g = ms[i] SUBSEP "gatehouse"; rk = ms[i] SUBSEP "reference"
		if (!(rk in r) || r[rk] <= 0) { printf "VERDICT mix=%s reference not measured\n", ms[i]; continue }
		x = r[g] / r[rk]; ok = (x >= 1.5 && p99[g] <= p99[rk]) ? "MET" : "MISSED"
		printf "VERDICT mix=%s gatehouse/reference throughput %.2fx, p99 %.3f ms vs %.3f ms: target (>=1.5x, p99 no worse) %s\n", ms[i], x, p99[g], p99[rk], ok }
}' "$RESULTS"
