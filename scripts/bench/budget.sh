#!/usr/bin/env bash
# budget.sh: the added latency of a cost budget (make bench).
#
# Starts a private redis-server on loopback and runs, in one process and
# one run, BenchmarkAgainstCount of ratelimit/budget: a plain request-count
# limit (the rate limiter's Redis store, one fixed window, one round trip
# per request) against a budget's reserve (one script call over two
# windows) and reserve+settle (the two round trips a budgeted request
# makes), each call waiting for the last. Prints the medians of REPS runs
# and what reserve+settle adds to a request over the count limit, as
# microseconds and as a same-run ratio.
#
# Knobs: REPS=5 N=3000 (calls per run)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-5}
N=${N:-3000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-budget.XXXXXX")
REDIS_PID=""
cleanup() {
	[[ -n $REDIS_PID ]] && kill -TERM "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[budget-bench] $*" >&2; }
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v redis-server >/dev/null || scripts/testenv.sh install
for _ in $(seq 100); do
	PORT=$((20000 + RANDOM % 30000))
	busy "$PORT" || break
done
redis-server --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do busy "$PORT" && break; sleep 0.05; done
busy "$PORT" || { log "redis-server did not start"; exit 1; }

log "reserve+settle against a count limit, $N calls a run, $REPS runs, redis on 127.0.0.1:$PORT"
GATEHOUSE_TEST_REDIS=127.0.0.1:$PORT GATEHOUSE_TEST_REQUIRE=1 \
	go test -run '^$' -bench 'AgainstCount|Memory' -benchmem -benchtime "${N}x" -count "$REPS" ./ratelimit/budget | tee "$WORK/out.txt"
# The budget stage's own work per request (estimate, headers, cost from a
# JSON answer), over the in-process store.
go test -run '^$' -bench 'BudgetStage' -benchmem -benchtime "${N}x" -count "$REPS" ./extproc | tee -a "$WORK/out.txt"
awk '
/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); v[name, ++n[name]] = $3 }
function med(k,   i, j, a, t, m) { m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
END {
	c = med("BenchmarkAgainstCount/count"); r = med("BenchmarkAgainstCount/reserve"); rs = med("BenchmarkAgainstCount/reserve+settle")
	mem = med("BenchmarkMemory"); st = med("BenchmarkBudgetStage")
	printf "\nmedians: count %.1f us, reserve %.1f us, reserve+settle %.1f us, in-process reserve+settle %.2f us, budget stage (in-process) %.1f us\n", c/1000, r/1000, rs/1000, mem/1000, st/1000
	printf "RESULT budget added_us=%.1f reserve_settle_over_count=%.2f reserve_over_count=%.2f\n", (rs-c)/1000, rs/c, r/c
}' "$WORK/out.txt"
