#!/usr/bin/env bash
# extproc.sh: load scenarios of the ext_proc server, each measured against a
# no-op ext_proc server (the ceiling of gRPC on this machine) in the same run,
# interleaved, and reported as ratios:
#
#   headers   GET on a header-hygiene route: request + response headers
#   contract  POST of a 1 KiB JSON body validated against an OpenAPI document
#   redact    GET whose 64 KiB JSON response is scanned for secrets
#
# Starts what it needs on 127.0.0.1 (a gatehouse binary built from this tree,
# the no-op server), stops all of it on exit, failure included.
#
#   DURATION (8s) CONCURRENCY (64) CONNS (4) ROUNDS (1) SCENARIOS ("headers contract redact")
#   LOADGEN: a load generator with bench/loadgen's flags; default: build ./bench/loadgen
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-8s}
CONCURRENCY=${CONCURRENCY:-64}
CONNS=${CONNS:-4}
ROUNDS=${ROUNDS:-1}
SCENARIOS=${SCENARIOS:-headers contract redact}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-extproc.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	echo "extproc.sh: no free port" >&2
	exit 1
}

if [ -z "${LOADGEN:-}" ]; then
	go build -o "$tmp/loadgen" ./bench/loadgen
	LOADGEN="$tmp/loadgen"
fi
go build -o "$tmp/gatehouse" ./cmd/gatehouse

null_addr=127.0.0.1:$(free_port)
gh_addr=127.0.0.1:$(free_port)
cat >"$tmp/gatehouse.yaml" <<EOF
apiVersion: gatehouse/v1
server:
  log: {level: warn}
  admin: {address: 127.0.0.1:0}
audit: {file: $tmp/audit.log}
extproc:
  address: $gh_addr
routes:
  - id: headers
    match: {prefix: /h}
    extproc:
      hygiene: {}
  - id: contract
    match: {prefix: /v1}
    extproc:
      hygiene: {}
      openapi:
        spec: |
          openapi: 3.0.3
          info: {title: bench, version: "1"}
          paths:
            /v1/things:
              post:
                requestBody:
                  required: true
                  content:
                    application/json:
                      schema:
                        type: object
                        required: [pad]
                        additionalProperties: false
                        properties: {pad: {type: string, maxLength: 100000}}
                responses:
                  "200": {description: ok}
  - id: redact
    match: {prefix: /r}
    extproc:
      hygiene: {}
      redact: {paths: [\$.secret]}
EOF

"$LOADGEN" null -api extproc -addr "$null_addr" >"$tmp/null.log" 2>&1 &
pids+=($!)
"$tmp/gatehouse" serve --config "$tmp/gatehouse.yaml" --log-format text >"$tmp/gatehouse.log" 2>&1 &
pids+=($!)

# scenario NAME -> the load flags of that scenario
flags() {
	case $1 in
	headers) echo "-route headers -path /h/orders/42" ;;
	contract) echo "-route contract -path /v1/things -body-bytes 1024 -send-bodies -header content-type=application/json" ;;
	redact) echo "-route redact -path /r -resp-body-bytes 65536 -send-bodies" ;;
	*)
		echo "extproc.sh: unknown scenario $1" >&2
		exit 2
		;;
	esac
}

# run TARGET_ADDR SCENARIO: prints the RESULT line.
run() {
	# shellcheck disable=SC2046
	"$LOADGEN" extproc -addr "$1" -concurrency "$CONCURRENCY" -conns "$CONNS" -duration "$DURATION" \
		-warmup 1s -wait 15s $(flags "$2") | tee -a "$tmp/all.log" | grep '^RESULT '
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "== ext_proc load: concurrency $CONCURRENCY, $CONNS connections, $DURATION per run, $ROUNDS round(s)"
summary=()
for round in $(seq 1 "$ROUNDS"); do
	for sc in $SCENARIOS; do
		n=$(run "$null_addr" "$sc")
		g=$(run "$gh_addr" "$sc")
		gerr=$(field "$g" err)
		if [ "${gerr:-1}" != "0" ]; then
			echo "extproc.sh: gatehouse answered $sc with errors: $g" >&2
			tail -20 "$tmp/gatehouse.log" >&2
			exit 1
		fi
		nrps=$(field "$n" rps) grps=$(field "$g" rps)
		np99=$(field "$n" p99_ms) gp99=$(field "$g" p99_ms)
		np50=$(field "$n" p50_ms) gp50=$(field "$g" p50_ms)
		line=$(awk -v sc="$sc" -v r="$round" -v nr="$nrps" -v gr="$grps" -v n99="$np99" -v g99="$gp99" -v n50="$np50" -v g50="$gp50" 'BEGIN {
			printf "SUMMARY extproc scenario=%s round=%s rps=%.0f null_rps=%.0f rps_ratio=%.2f p50_ms=%.3f null_p50_ms=%.3f p99_ms=%.3f null_p99_ms=%.3f p99_added_ms=%.3f",
				sc, r, gr, nr, gr / nr, g50, n50, g99, n99, g99 - n99 }')
		echo "$line"
		summary+=("$line")
	done
done
echo "== ext_proc summary (ratios against the no-op server measured in the same run)"
printf '%s\n' "${summary[@]}"
