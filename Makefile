# Harness — make targets. `make test` is what CI runs (after `make lint`).
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test test-deps test-short lint bench demo clean

all: lint test

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gateway ./cmd/gateway

# Unit, fuzz-corpus and integration tests, with the race detector. The
# integration tests start their own redis-server, FastAPI process and gateway
# binary; nothing is skipped. test-deps installs what they need first.
test: test-deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Debian packages (as root; otherwise the exact command to run) and the pinned
# npm packages of the interop and conformance suites (e2e/npm).
test-deps:
	@scripts/test-deps.sh

# A quick local loop: -short skips the slow integration tests. CI never uses it.
test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Go benchmarks of the hot pieces (benchstat-friendly), then the end-to-end
# load benchmark (real binary, redis-server, both MCP eras, against a minimal
# MCP→HTTP translator with no security and with a CPU profile; about 5 minutes),
# which rewrites docs/benchmarks.md. Needs redis-server; not run in CI.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)
	$(GO) run ./bench -out docs/benchmarks.md

demo:
	$(GO) run ./cmd/gateway demo

clean:
	rm -rf bin
