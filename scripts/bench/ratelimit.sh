#!/usr/bin/env bash
# ratelimit.sh: the rate limit service against envoyproxy/ratelimit (make bench).
#
# The scenario of ../shared/bench/rls-peer.sh, run here side by side: on
# loopback, the no-op RLS server (the ceiling of gRPC on this machine), the
# reference envoyproxy/ratelimit (built from the Go module proxy at the
# version go.mod pins) and gatehouse, each rate limiter on its own private
# redis-server, both serving the same envoyproxy/ratelimit-format file
# (ratelimit/testdata/peer-envoy.yaml, rls-peer.sh's domain gatehouse_subject).
# gatehouse runs in its own mode, with its defaults: response headers on, the
# local over-limit cache on. Then, interleaved, REPS times, the order of the
# targets rotating: the same closed-loop load on each (CONCURRENCY in flight
# over CONNS connections, KEYS subjects, one descriptor of two entries, tier
# and subject), in two mixes:
#   ok    tier "free"  (100000/second per subject): almost every answer OK
#   over  tier "tight" (1/hour per subject): almost every answer OVER_LIMIT
# Each Redis is flushed before every run. Everything started here is stopped
# on exit, even on failure.
#
# Per run and as medians: rps, p50/p99, server CPU µs and allocations per
# request (over warm-up and measured time: gatehouse's Go runtime counter
# from its /metrics, the reference's from its pprof page), its Redis' CPU µs
# per request, throughput as a
# ratio to the no-op server's (x_null) and the reference's (x_ref). Then a
# verdict per mix against issue 12's target: >= 2.0x the reference's
# throughput, p99 <= half of its, CPU per request <= half of its.
#
# Knobs: DURATION=10s WARMUP=2s REPS=3 CONCURRENCY=64 KEYS=10000 CONNS=4
#   TARGETS="null reference gatehouse" MIXES="ok over"
#   LOADGEN=path of a loadgen binary (default: built from ./bench/loadgen)
#   GATEHOUSE_BIN=path of a gatehouse binary (default: built here)
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
MIXES=${MIXES:-ok over}
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
start_redis() { # name → sets REDIS_PORT_<name>, REDIS_PID_<name>
	local port
	port=$(free_port)
	redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$WORK" \
		--logfile "$WORK/redis-$1.log" --protected-mode yes >/dev/null 2>&1 &
	PIDS+=($!)
	wait_port "$port" "$!" "redis-$1"
	printf -v "REDIS_PORT_$1" '%s' "$port"
	printf -v "REDIS_PID_$1" '%s' "$!"
}

# --- binaries -----------------------------------------------------------
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || scripts/testenv.sh install
log "building gatehouse and the load generator"
if [[ -z ${GATEHOUSE_BIN:-} ]]; then
	go build -o "$WORK/gatehouse" ./cmd/gatehouse
	GATEHOUSE_BIN=$WORK/gatehouse
fi
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

# --- servers: the same config file for both ---------------------------------
mkdir -p "$WORK/runtime/rls/config"
cp ratelimit/testdata/peer-envoy.yaml "$WORK/runtime/rls/config/gatehouse_subject.yaml"

TARGETS=${TARGETS:-null reference gatehouse}
[[ -n $REF_BIN ]] || TARGETS=${TARGETS/reference/}

NULL_PORT=$(free_port)
"$LOADGEN" null -api rls -addr "127.0.0.1:$NULL_PORT" >"$WORK/null.log" 2>&1 &
PIDS+=($!)
NULL_PID=$!
wait_port "$NULL_PORT" "$NULL_PID" null

start_redis gatehouse
GH_PORT=$(free_port)
GH_ADMIN=$(free_port)
cat >"$WORK/gatehouse.yaml" <<YAML
apiVersion: gatehouse/v1
server:
  log: {level: warn}
  admin: {address: 127.0.0.1:$GH_ADMIN}
redis: {addresses: ["127.0.0.1:$REDIS_PORT_gatehouse"]}
audit: {file: $WORK/audit.log}
ratelimit:
  address: 127.0.0.1:$GH_PORT
  envoyConfigs: [$WORK/runtime/rls/config]
YAML
"$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.yaml" --components ratelimit >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
GH_PID=$!
wait_port "$GH_PORT" "$GH_PID" gatehouse
wait_port "$GH_ADMIN" "$GH_PID" gatehouse

REF_PORT="" REF_PID="" REF_DEBUG=""
if [[ $TARGETS == *reference* ]]; then
	start_redis reference
	REF_PORT=$(free_port)
	REF_DEBUG=$(free_port)
	env USE_STATSD=false DISABLE_STATS=true LOG_LEVEL=warn BACKEND_TYPE=redis \
		REDIS_SOCKET_TYPE=tcp REDIS_TYPE=SINGLE REDIS_URL="127.0.0.1:$REDIS_PORT_reference" \
		RUNTIME_ROOT="$WORK/runtime" RUNTIME_SUBDIRECTORY=rls RUNTIME_APPDIRECTORY=config RUNTIME_WATCH_ROOT=false \
		HOST=127.0.0.1 PORT="$(free_port)" GRPC_HOST=127.0.0.1 GRPC_PORT="$REF_PORT" \
		DEBUG_HOST=127.0.0.1 DEBUG_PORT="$REF_DEBUG" \
		"$REF_BIN" >"$WORK/reference.log" 2>&1 &
	PIDS+=($!)
	REF_PID=$!
	wait_port "$REF_PORT" "$REF_PID" reference
fi

# mallocs prints a server's count of heap allocations so far ("-" unknown).
mallocs() {
	case $1 in
	gatehouse) curl -fsS "http://127.0.0.1:$GH_ADMIN/metrics" 2>/dev/null | awk '/^go_memstats_mallocs_total /{printf "%.0f\n", $2; f=1} END{if(!f) print "-"}' ;;
	reference) curl -fsS "http://127.0.0.1:$REF_DEBUG/debug/pprof/heap?debug=1" 2>/dev/null | awk '/^# Mallocs = /{print $4; f=1} END{if(!f) print "-"}' ;;
	*) echo - ;;
	esac
}

# --- runs -----------------------------------------------------------------
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
RESULTS=$WORK/results.tsv
: >"$RESULTS"
log "load: concurrency $CONCURRENCY, $KEYS subjects, $CONNS connections, $DURATION per run (+$WARMUP warm-up), $REPS reps; targets: $TARGETS"
printf '%-5s %-10s %3s %9s %8s %8s %6s %8s %9s %9s\n' mix target rep rps p50_ms p99_ms over% cpu_us/r allocs/r redis_us/r
for rep in $(seq "$REPS"); do
	for mix in $MIXES; do
		tier=free
		[[ $mix == over ]] && tier=tight
		# Rotate the order so that no target always runs first.
		set -- $TARGETS
		order=("${@:$(((rep - 1) % $# + 1))}" "${@:1:$(((rep - 1) % $#))}")
		for target in "${order[@]}"; do
			case $target in
			null) addr=127.0.0.1:$NULL_PORT pid=$NULL_PID rport="" rpid="" ;;
			reference) addr=127.0.0.1:$REF_PORT pid=$REF_PID rport=$REDIS_PORT_reference rpid=$REDIS_PID_reference ;;
			gatehouse) addr=127.0.0.1:$GH_PORT pid=$GH_PID rport=$REDIS_PORT_gatehouse rpid=$REDIS_PID_gatehouse ;;
			*) die "unknown target $target" ;;
			esac
			[[ -z $rport ]] || redis-cli -p "$rport" FLUSHALL >/dev/null
			c0=$(ticks "$pid") m0=$(mallocs "$target") r0=-
			[[ -z $rpid ]] || r0=$(ticks "$rpid")
			out=$("$LOADGEN" rls -addr "$addr" -domain gatehouse_subject -tier "$tier" -keys "$KEYS" -concurrency "$CONCURRENCY" \
				-conns "$CONNS" -duration "$DURATION" -warmup "$WARMUP" -wait 15s -seed "$rep") || die "$target: $out"
			c1=$(ticks "$pid") m1=$(mallocs "$target") r1=-
			[[ -z $rpid ]] || r1=$(ticks "$rpid")
			res=$(grep '^RESULT ' <<<"$out") || die "$target: no RESULT line: $out"
			n=$(field n "$res") secs=$(field secs "$res")
			ov=$(field over "$res")
			# CPU and allocations per request over warm-up and measured time
			# (requests in both estimated from the measured rate).
			per() { awk -v a="$1" -v b="$2" -v k="$3" -v n="$n" -v s="$secs" -v w="${WARMUP%s}" \
				'BEGIN{ if (n>0 && a!="-" && b!="-") printf "%.1f", (b-a)*k/(n*(s+w)/s); else print "-" }'; }
			cpu=$(per "$c0" "$c1" "$(awk -v t="$CLK_TCK" 'BEGIN{print 1e6/t}')")
			allocs=$(per "$m0" "$m1" 1)
			rcpu=$(per "$r0" "$r1" "$(awk -v t="$CLK_TCK" 'BEGIN{print 1e6/t}')")
			overpct=$(awk -v o="${ov:-0}" -v n="$n" 'BEGIN{ if (n>0) printf "%.1f", 100*o/n; else print 0 }')
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mix" "$target" "$rep" "$(field rps "$res")" "$(field p50_ms "$res")" \
				"$(field p99_ms "$res")" "$overpct" "$cpu" "$allocs" "$(field err "$res")" "$rcpu" >>"$RESULTS"
			printf '%-5s %-10s %3s %9.0f %8s %8s %6s %8s %9s %9s\n' "$mix" "$target" "$rep" "$(field rps "$res")" "$(field p50_ms "$res")" \
				"$(field p99_ms "$res")" "$overpct" "$cpu" "$allocs" "$rcpu"
		done
	done
done

# --- medians, ratios, verdicts ----------------------------------------------
echo
echo "median of $REPS runs, $DURATION each, $(nproc) CPUs; x_null = throughput / no-op server's, x_ref = throughput / envoyproxy/ratelimit's ($REF_VERSION)"
awk -F'\t' '
function med(k, c,   i, j, a, t, m, x) { m = 0
	for (i = 1; i <= n[k]; i++) if (v[k, c, i] != "-") a[++m] = v[k, c, i] + 0
	if (m == 0) return "-"
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
function ratio(a, b) { return (a != "-" && b != "-" && b > 0) ? sprintf("%.2f", a / b) : "-" }
{ k = $1 SUBSEP $2; n[k]++; for (c = 4; c <= 11; c++) v[k, c, n[k]] = $c; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
END {
	printf "%-5s %-10s %9s %8s %8s %6s %9s %9s %10s %7s %7s %8s %8s\n", "mix", "target", "rps", "p50_ms", "p99_ms", "over%", "cpu_us/r", "allocs/r", "redis_us/r", "x_null", "x_ref", "p99/ref", "cpu/ref"
	for (i = 1; i <= m; i++) { k = order[i]; r[k] = med(k, 4); p99[k] = med(k, 6); cpu[k] = med(k, 8); al[k] = med(k, 9) }
	for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP)
		nk = p[1] SUBSEP "null"; rk = p[1] SUBSEP "reference"
		printf "%-5s %-10s %9.0f %8.3f %8.3f %6.1f %9s %9s %10s %7s %7s %8s %8s\n", p[1], p[2], r[k], med(k, 5), p99[k], med(k, 7), cpu[k], al[k],
			med(k, 11), ratio(r[k], r[nk]), ratio(r[k], r[rk]), ratio(p99[k], p99[rk]), ratio(cpu[k], cpu[rk]) }
	for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP); if (p[2] != "gatehouse") continue
		rk = p[1] SUBSEP "reference"
		if (!(rk in r) || r[rk] <= 0) { printf "VERDICT mix=%s reference not measured\n", p[1]; continue }
		x = r[k] / r[rk]; lat = p99[k] / p99[rk]; c = (cpu[k] != "-" && cpu[rk] != "-" && cpu[rk] > 0) ? cpu[k] / cpu[rk] : 9
		ok = (x >= 2.0 && lat <= 0.5 && c <= 0.5) ? "MET" : "MISSED"
		printf "VERDICT mix=%s gatehouse/reference throughput %.2fx, p99 %.3f vs %.3f ms (%.2f), CPU/request %s vs %s us (%.2f): target (>=2.0x, p99 <= 0.5, CPU <= 0.5) %s\n",
			p[1], x, p99[k], p99[rk], lat, cpu[k], cpu[rk], c, ok
		# What gRPC alone allows here: a target beyond the no-op server
		# cannot be met by any rate limiter on this machine.
		nk = p[1] SUBSEP "null"
		if ((nk in r) && r[nk] > 0)
			printf "CEILING mix=%s no-op server/reference throughput %.2fx, p99 %.2f; gatehouse is at %.2f of the no-op throughput, 2.0x the reference is %.2f of it\n",
				p[1], r[nk] / r[rk], p99[nk] / p99[rk], r[k] / r[nk], 2.0 * r[rk] / r[nk] }
}' "$RESULTS"
