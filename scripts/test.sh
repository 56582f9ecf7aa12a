#!/usr/bin/env bash
# test.sh: what `make test` runs. Installs and starts the services the tests
# need (scripts/testenv.sh), runs go vet, the gofmt check, golangci-lint
# (scripts/lint.sh) and the race-enabled tests, and always stops what it
# started, even when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-test.XXXXXX")
cleanup() {
	scripts/testenv.sh stop "$dir" || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

scripts/testenv.sh start "$dir"
# shellcheck disable=SC1091
. "$dir/env"

echo "== go vet"
go vet ./...
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== golangci-lint"
scripts/lint.sh
echo "== go test -race"
go test -race -count=1 -timeout "${TEST_TIMEOUT:-15m}" ${TEST_FLAGS:-} "${@:-./...}"
