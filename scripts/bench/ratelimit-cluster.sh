#!/usr/bin/env bash
# ratelimit-cluster.sh: the rate limiter on a 3-master Redis Cluster (make bench).
#
# The load of scripts/bench/ratelimit.sh (closed loop, CONCURRENCY in flight,
# KEYS subjects, one descriptor of two entries, the reference-format file
# ratelimit/testdata/peer-envoy.yaml; mixes ok and over), against gatehouse
# on a 3-master Redis Cluster started here (like the one `make test` starts:
# no replicas, loopback), and, interleaved for scale, against gatehouse on one
# redis-server. Per run: rps, p50/p99, gatehouse's CPU µs per request, Redis
# CPU µs per request (all nodes), commands per request (every node's
# total_commands_processed, EVALSHA and the rest) and the busiest master's
# share of the Redis CPU: the inputs of the scaling model in
# docs/ratelimit.md ("Scaling"). Everything started here is stopped on exit.
#
# Knobs: DURATION=10s WARMUP=2s REPS=2 CONCURRENCY=64 KEYS=10000 CONNS=4
#   MIXES="ok over" TARGETS="single cluster" GATEHOUSE_BIN LOADGEN
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
REPS=${REPS:-2}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-10000}
CONNS=${CONNS:-4}
MIXES=${MIXES:-ok over}
TARGETS=${TARGETS:-single cluster}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-rlcluster.XXXXXX")
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
log() { echo "[ratelimit-cluster-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port whose cluster bus port (+10000) is free too
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 10000)) # bus ports (+10000) never collide with ours
		busy "$p" || busy $((p + 10000)) || { echo "$p"; return; }
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
start_redis() { # name [args...] → prints "port pid"
	local name=$1 port
	shift
	port=$(free_port)
	mkdir -p "$WORK/$name"
	redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$WORK/$name" \
		--logfile "$WORK/$name.log" --protected-mode yes "$@" >/dev/null 2>&1 &
	PIDS+=($!)
	wait_port "$port" "$!" "$name"
	echo "$port $!"
}

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
mkdir -p "$WORK/config"
cp ratelimit/testdata/peer-envoy.yaml "$WORK/config/gatehouse_subject.yaml"

# --- Redis: one server, and a 3-master cluster ----------------------------
read -r SINGLE SINGLE_PID < <(start_redis single)
NODES=() NODE_PIDS=()
for i in 1 2 3; do
	read -r p pid < <(start_redis "node$i" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
	NODES+=("$p") NODE_PIDS+=("$pid")
done
redis-cli --cluster create "${NODES[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
	die "cluster create: $(tail -3 "$WORK/cluster-create.log")"
for _ in $(seq 100); do
	redis-cli -p "${NODES[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
	sleep 0.1
done

# --- gatehouse on each -----------------------------------------------------
start_gatehouse() { # name redis-yaml → prints "port pid"
	local port
	port=$(free_port)
	cat >"$WORK/$1.yaml" <<YAML
apiVersion: gatehouse/v1
server:
  log: {level: warn}
  admin: {address: 127.0.0.1:0}
redis: $2
audit: {file: $WORK/audit-$1.log}
ratelimit:
  address: 127.0.0.1:$port
  envoyConfigs: [$WORK/config]
YAML
	"$GATEHOUSE_BIN" serve --config "$WORK/$1.yaml" --components ratelimit >"$WORK/gh-$1.log" 2>&1 &
	PIDS+=($!)
	wait_port "$port" "$!" "gh-$1"
	echo "$port $!"
}
read -r GH_SINGLE GH_SINGLE_PID < <(start_gatehouse single "{addresses: [\"127.0.0.1:$SINGLE\"]}")
read -r GH_CLUSTER GH_CLUSTER_PID < <(start_gatehouse cluster "{mode: cluster, addresses: [$(printf '"127.0.0.1:%s",' "${NODES[@]}" | sed 's/,$//')]}")

# --- runs -------------------------------------------------------------------
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
cmds() { redis-cli -p "$1" info stats 2>/dev/null | tr -d '\r' | awk -F: '/^total_commands_processed:/{print $2}'; }
evals() { redis-cli -p "$1" info commandstats 2>/dev/null | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_eval(sha)?:/{s+=$3} END{print s+0}'; }
log "load: concurrency $CONCURRENCY, $KEYS subjects, $DURATION per run (+$WARMUP warm-up), $REPS reps; gatehouse on one redis-server and on a 3-master cluster"
printf '%-5s %-8s %3s %9s %8s %8s %6s %8s %9s %8s %8s %9s\n' mix target rep rps p50_ms p99_ms over% gh_us/r redis_us/r cmds/r evals/r hottest%
RESULTS=$WORK/results.tsv
: >"$RESULTS"
for rep in $(seq "$REPS"); do
	for mix in $MIXES; do
		tier=free
		[[ $mix == over ]] && tier=tight
		for target in $TARGETS; do
			if [[ $target == single ]]; then
				addr=127.0.0.1:$GH_SINGLE gh=$GH_SINGLE_PID ports=("$SINGLE") pids=("$SINGLE_PID")
			else
				addr=127.0.0.1:$GH_CLUSTER gh=$GH_CLUSTER_PID ports=("${NODES[@]}") pids=("${NODE_PIDS[@]}")
			fi
			for p in "${ports[@]}"; do redis-cli -p "$p" FLUSHALL >/dev/null; done
			g0=$(ticks "$gh") r0=() c0=() e0=()
			for i in "${!ports[@]}"; do r0+=("$(ticks "${pids[$i]}")") c0+=("$(cmds "${ports[$i]}")") e0+=("$(evals "${ports[$i]}")"); done
			out=$("$LOADGEN" rls -addr "$addr" -domain gatehouse_subject -tier "$tier" -keys "$KEYS" -concurrency "$CONCURRENCY" \
				-conns "$CONNS" -duration "$DURATION" -warmup "$WARMUP" -wait 15s -seed "$rep") || die "$target: $out"
			g1=$(ticks "$gh") rt=0 ct=0 et=0 hot=0
			for i in "${!ports[@]}"; do
				d=$(($(ticks "${pids[$i]}") - ${r0[$i]}))
				rt=$((rt + d)) hot=$((d > hot ? d : hot))
				ct=$((ct + $(cmds "${ports[$i]}") - ${c0[$i]}))
				et=$((et + $(evals "${ports[$i]}") - ${e0[$i]}))
			done
			res=$(grep '^RESULT ' <<<"$out") || die "$target: no RESULT line: $out"
			n=$(field n "$res") secs=$(field secs "$res")
			# Per request over warm-up and measured time.
			all=$(awk -v n="$n" -v s="$secs" -v w="${WARMUP%s}" 'BEGIN{print n*(s+w)/s}')
			row=$(awk -v mix="$mix" -v tg="$target" -v rep="$rep" -v rps="$(field rps "$res")" -v p50="$(field p50_ms "$res")" \
				-v p99="$(field p99_ms "$res")" -v ov="$(field over "$res")" -v n="$n" -v all="$all" -v g="$((g1 - g0))" \
				-v r="$rt" -v c="$ct" -v e="$et" -v hot="$hot" -v t="$CLK_TCK" \
				'BEGIN{ printf "%s\t%s\t%s\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.3f\t%s\n", mix, tg, rep, rps, p50, p99, 100*ov/n,
					g*1e6/t/all, r*1e6/t/all, c/all, e/all, (r>0) ? sprintf("%.0f", 100*hot/r) : "-" }')
			echo "$row" >>"$RESULTS"
			# shellcheck disable=SC2086
			printf '%-5s %-8s %3s %9s %8s %8s %6s %8s %9s %8s %8s %9s\n' $row
		done
	done
done
echo
echo "median of $REPS runs, $DURATION each, $(nproc) CPUs (gatehouse, Redis and the load share them);"
echo "redis_us/r: Redis CPU per request, all nodes; cmds/r: Redis commands per request, those run inside scripts included;"
echo "evals/r: script calls (EVALSHA/EVAL) per request; hottest%: the busiest node's share of the Redis CPU"
awk -F'\t' '
function med(k, c,   i, j, a, t, m) { m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, c, i] + 0
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
{ k = $1 SUBSEP $2; n[k]++; for (c = 4; c <= 12; c++) v[k, c, n[k]] = $c; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
END {
	printf "%-5s %-8s %9s %8s %8s %6s %8s %10s %8s %8s %9s %9s\n", "mix", "target", "rps", "p50_ms", "p99_ms", "over%", "gh_us/r", "redis_us/r", "cmds/r", "evals/r", "hottest%", "x_single"
	for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP); s = p[1] SUBSEP "single"
		printf "%-5s %-8s %9.0f %8.3f %8.3f %6.1f %8.1f %10.1f %8.2f %8.3f %9s %9s\n", p[1], p[2], med(k, 4), med(k, 5), med(k, 6), med(k, 7),
			med(k, 8), med(k, 9), med(k, 10), med(k, 11), med(k, 12), (s in n && med(s, 4) > 0) ? sprintf("%.2f", med(k, 4) / med(s, 4)) : "-" }
}' "$RESULTS"
