#!/usr/bin/env bash
# bench.sh: what `make bench` runs.
#  1. every Go benchmark of the module (BENCHTIME, default 1s; BENCH, default .)
#  2. every load scenario under scripts/bench/ (each a script that starts what
#     it needs on loopback, drives it, stops it, and prints its figures).
# The machine is shared: compare figures from one run, as ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== go test -bench"
go test -run '^$' -bench "${BENCH:-.}" -benchmem -benchtime "${BENCHTIME:-1s}" ./...
for s in scripts/bench/*.sh; do
	[ -e "$s" ] || continue
	echo "== $s"
	"$s"
done
