#!/usr/bin/env bash
# authz.sh: load scenario for the ext_authz server (make bench runs it).
#
# In one run, on loopback, with the same load generator and flags:
#   (a) a no-op ext_authz server (nullauthz): the ceiling of gRPC here;
#   (b) gatehouse serve --components authz with an RS256 JWT policy and
#       TOKENS hot tokens (round-robin), audit lines written to a file.
# Prints both RESULT lines and gatehouse's throughput as a ratio of the
# ceiling. Everything started is stopped on exit, failure included.
#
# Knobs: DURATION (8s) CONCURRENCY (64) CONNS (4) TOKENS (1000) ROUNDS (1)
#        AUDIT=file (default: lines to a rotated file in the temp dir) or AUDIT=stdout
#        (lines to gatehouse's standard output, discarded: the writer without file I/O)
#        LOADGEN, NULLSERVER, MINT: see below (default: bench/loadgen)
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8s}
CONCURRENCY=${CONCURRENCY:-64}
CONNS=${CONNS:-4}
TOKENS=${TOKENS:-1000}
ROUNDS=${ROUNDS:-1}

work=$(mktemp -d -t gatehouse-authz-bench.XXXXXX)
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

# The in-repo load generator (bench/loadgen) by default; LOADGEN may name
# another command taking its authz flags (e.g. /work/shared/bench's
# authzload), NULLSERVER a no-op ext_authz server taking -addr, MINT a
# command taking loadgen mint-jwt's flags.
if [ -z "${LOADGEN:-}" ]; then
	go build -o "$work/loadgen" ./bench/loadgen
	LOADGEN="$work/loadgen authz"
	NULLSERVER=${NULLSERVER:-"$work/loadgen null -api authz"}
	MINT=${MINT:-"$work/loadgen mint-jwt"}
fi
if [ -z "${NULLSERVER:-}" ] || [ -z "${MINT:-}" ]; then
	[ -x "$work/loadgen" ] || go build -o "$work/loadgen" ./bench/loadgen
	NULLSERVER=${NULLSERVER:-"$work/loadgen null -api authz"}
	MINT=${MINT:-"$work/loadgen mint-jwt"}
fi
go build -o "$work/gatehouse" ./cmd/gatehouse

echo "authz: minting $TOKENS RS256 tokens"
$MINT -n "$TOKENS" -jwks-out "$work/jwks.json" -tokens-out "$work/tokens.txt" -iss https://bench.invalid -aud gatehouse >/dev/null

gh_port=$(free_port)
admin_port=$(free_port)
null_port=$(free_port)
cat >"$work/gatehouse.yaml" <<YAML
apiVersion: gatehouse/v1
server:
  log: {level: warn, format: json}
  admin: {address: 127.0.0.1:$admin_port}
audit:
$(if [ "${AUDIT:-file}" = stdout ]; then echo "  stdout: true"; else echo "  file: $work/audit.log"; fi)
authz:
  address: 127.0.0.1:$gh_port
  jwt:
    issuers:
      - name: bench
        issuer: https://bench.invalid
        audiences: [gatehouse]
        algorithms: [RS256]
        tierClaim: plan
        jwksFile: $work/jwks.json
routes:
  - id: bench
    match: {prefix: /}
    authz: {jwt: {issuers: [bench]}}
YAML

load() { # addr
	$LOADGEN -addr "$1" -route bench -tokens "$work/tokens.txt" -concurrency "$CONCURRENCY" -conns "$CONNS" \
		-duration "$DURATION" -warmup 1s -wait 20s | grep '^RESULT'
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

$NULLSERVER -addr "127.0.0.1:$null_port" >"$work/null.log" 2>&1 &
pids+=($!)
"$work/gatehouse" serve --config "$work/gatehouse.yaml" --components authz >/dev/null 2>"$work/gatehouse.log" &
pids+=($!)

ratios=()
for round in $(seq "$ROUNDS"); do
	null=$(load "127.0.0.1:$null_port")
	gh=$(load "127.0.0.1:$gh_port")
	echo "authz round $round ceiling:   $null"
	echo "authz round $round gatehouse: $gh"
	nr=$(echo "$null" | field rps)
	gr=$(echo "$gh" | field rps)
	allowed=$(echo "$gh" | field allowed)
	# authzload prints denied=N, loadgen denied_<status>=N per status.
	denied=$( (echo "$gh" | grep -o ' denied[_0-9]*=[0-9]*' || true) | cut -d= -f2 | awk '{s+=$1} END {print s+0}')
	errs=$(echo "$gh" | field err || true)
	errs=${errs:-0}
	if [ "$denied" != "0" ]; then
		echo "authz: gatehouse denied $denied checks; the figures are not of the allow path" >&2
		tail -5 "$work/gatehouse.log" >&2
		exit 1
	fi
	if [ "$errs" != "0" ]; then
		echo "authz: warning: $errs checks failed at the gRPC level (deadline exceeded on a loaded machine?)" >&2
	fi
	python3 - "$nr" "$gr" "$(echo "$null" | field p99_ms)" "$(echo "$gh" | field p99_ms)" "$allowed" <<'PY'
import sys
nr, gr, np99, gp99, allowed = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
print(f"SUMMARY authz rps={gr:.0f} ceiling_rps={nr:.0f} ratio={gr/nr:.2f} p99_ms={gp99} ceiling_p99_ms={np99} allowed={allowed} (target: ratio >= 0.70, p99 <= 3 ms)")
PY
	ratios+=("$(python3 -c "print($gr/$nr)")")
done
if [ "$ROUNDS" -gt 1 ]; then
	python3 -c 'import sys, statistics; r=[float(x) for x in sys.argv[1:]]; print(f"SUMMARY authz median ratio over {len(r)} rounds: {statistics.median(r):.2f} (min {min(r):.2f}, max {max(r):.2f})")' "${ratios[@]}"
fi
if [ -f "$work/audit.log" ]; then echo "authz: audit lines written: $(wc -l <"$work/audit.log")"; fi
exit 0
