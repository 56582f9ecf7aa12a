#!/usr/bin/env bash
# fuzz.sh: run every native Go fuzz target for FUZZTIME (default 20s) each.
set -euo pipefail
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "== $pkg $target"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-20s}" -fuzzminimizetime "${FUZZMINIMIZETIME:-3s}" "$pkg"
	done
done
