# gatehouse — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /usr/bin/env bash
GO ?= go
BIN := bin/gatehouse
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/gatehouse/gatehouse/cmd/gatehouse/app.Version=$(VERSION)

.PHONY: run test build bench fuzz fmt vet lint clean testenv-install

## run: serve every component on the default config (examples/gatehouse.yaml), no Redis needed
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/gatehouse serve --config examples/gatehouse.yaml --log-format text

## test: install/start what the tests need (redis-server, a local Redis Cluster), vet, gofmt, lint, go test -race
test:
	scripts/test.sh

## build: the gatehouse binary in bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

## bench: Go benchmarks of every hot path, then the load scenarios (scripts/bench/*.sh)
bench:
	scripts/bench.sh

## fuzz: run every fuzz target for FUZZTIME each (default 20s)
fuzz:
	scripts/fuzz.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

## lint: golangci-lint at the pinned version (installed into .cache/bin on first use)
lint:
	scripts/lint.sh

clean:
	rm -rf bin
