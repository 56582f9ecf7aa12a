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

# The Helm chart is checked by its own Go module (deploy/helm/chartcheck),
# which keeps Helm and the Kubernetes API modules out of gatehouse's go.mod.
# It renders the chart, decodes every object strictly, compares golden files
# and runs the gatehouse binary it builds on the rendered config. Skipped
# when test.sh is given packages to test.
if [ $# -eq 0 ]; then
	echo "== helm chart (deploy/helm/chartcheck)"
	(cd deploy/helm/chartcheck && go vet ./... && go test -count=1 -timeout 10m ./...)
fi
