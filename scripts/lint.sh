#!/usr/bin/env bash
# lint.sh: golangci-lint with the repository's .golangci.yml, at the pinned
# version below. It installs that version with `go install` into .cache/bin
# (git-ignored) the first time, so nothing needs to be on PATH; later runs
# reuse it. Arguments are passed to `golangci-lint run` (default ./...).
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
bin="$PWD/.cache/bin"
lint="$bin/golangci-lint"

if ! "$lint" version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v} "; then
	echo "lint: installing golangci-lint $GOLANGCI_LINT_VERSION into .cache/bin" >&2
	mkdir -p "$bin"
	GOBIN="$bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
# Several checkouts (or CI jobs) on one machine share golangci-lint's lock:
# wait for it rather than fail.
exec "$lint" run --allow-serial-runners "${@:-./...}"
