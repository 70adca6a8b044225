# rotary — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/rotary
PKGS := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT ?= 19m
# Parallel tests per package: the e2e tests mostly wait on daemons and
# services (the suite used under half of 2 cores at the default of
# GOMAXPROCS), so more of them run at once.
TEST_PARALLEL ?= 4
# Packages tested at once: the two longest (e2e and the RabbitMQ example,
# about 200 s each) mostly wait on daemons and services, so a third lane
# keeps the cores busy meanwhile.
TEST_PACKAGES ?= 3

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The version and commit `rotary version` prints.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build
build: ## build bin/rotary (with the version and commit of the checkout)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rotary

# make install: into GOBIN when it is set, else /usr/local/bin; PREFIX=DIR
# (given to make) installs into DIR/bin instead, whatever GOBIN says.
PREFIX ?= /usr/local
ifeq ($(origin BINDIR),undefined)
ifeq ($(origin PREFIX),file)
BINDIR := $(or $(strip $(GOBIN)),$(PREFIX)/bin)
else
BINDIR := $(PREFIX)/bin
endif
endif

# make run: LISTEN=host:port, or PORT=N for 127.0.0.1:N (LISTEN wins).
PORT ?= 8420
LISTEN ?= 127.0.0.1:$(PORT)

.PHONY: install
install: build ## install rotary into GOBIN if set, else /usr/local/bin (PREFIX=DIR: into DIR/bin)
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/rotary

.PHONY: run
run: build ## run a dev daemon on the embedded store (data in .rotary-dev/; PORT=8420 or LISTEN=host:port)
	$(BIN) server --dev --data-dir .rotary-dev --listen $(LISTEN)

.PHONY: services
services: ## install, start and prepare PostgreSQL, MariaDB, Redis and RabbitMQ (and promtool) for the tests
	./scripts/services.sh

.PHONY: test
test: services fmt-check vet ## the whole suite with the race detector (needs the services)
	$(GO) test -race -count=1 -p $(TEST_PACKAGES) -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: bench
bench: services ## run the benchmarks (results go to bench.out; record them in BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m $(PKGS) | tee bench.out

.PHONY: fuzz
fuzz: ## run every fuzzer for FUZZTIME each (default 20s)
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$spec || exit 1; \
	  done; \
	done

.PHONY: lint
lint: fmt-check vet ## gofmt, go vet and staticcheck
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: fmt-check
fmt-check:
	@out=$$(find . -name '*.go' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet:
	$(GO) vet $(PKGS)

.PHONY: proto
proto: ## regenerate plugins/proto (installs protoc and the pinned protoc-gen-go, protoc-gen-go-grpc)
	./scripts/proto.sh

.PHONY: proto-check
proto-check: ## regenerate plugins/proto into a temporary directory and fail if the checked-in code differs
	./scripts/proto.sh --check

.PHONY: plugins
plugins: ## build every plugins/examples/NAME into bin/plugins/NAME
	@mkdir -p bin/plugins
	@for d in plugins/examples/*/; do \
	  n=$$(basename $$d); echo "$(GO) build -o bin/plugins/$$n ./$$d"; \
	  $(GO) build -o bin/plugins/$$n ./$$d || exit 1; \
	done

.PHONY: clean
clean: ## remove build output and dev data
	rm -rf bin .rotary-dev bench.out
