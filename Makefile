# xdpnet build, test and benchmark entry points. Run `make help`.
#
# Everything the targets need is installed by `make deps`: Debian packages with
# apt-get, Go modules and pinned tools (bpf2go, staticcheck) through the module
# proxy via the `tool` block of go.mod.
#
# The benchmark suite is a module of its own in bench/ (it alone needs the
# plotting libraries): the main module's ./... leaves it out, so every
# target that builds, checks or tests code runs on both modules.

SHELL := /bin/bash
GO ?= go
GOFLAGS ?=
PKGS := ./...
# The suite's module, run with `go -C`; it measures the main module.
BENCH_GO := $(GO) -C bench
# Privileged tests (root) build their own lab namespaces with unique names,
# so packages may run them in parallel; under CI=true they fail, never skip.
TEST_TIMEOUT ?= 30m
BENCH_TIME ?= 1s
# The engine's fault suite (issue 17) starts third-party origins
# (ngtcp2-server's gtlsserver, caddy), clients (h2load from nghttp2-client,
# curl, wrk, slowhttptest) and fault tools (nftables, hping3) in the lab;
# the TCP backend tests (issue 22) nginx, h2o and haproxy as origins;
# make bench-peers reads xdpnet's /stats with jq and makes its certificate
# with openssl.
APT_PACKAGES := clang llvm libbpf-dev linux-libc-dev iperf3 nghttp2-client curl iproute2 ethtool \
	ngtcp2-server caddy wrk slowhttptest nftables hping3 nginx h2o haproxy jq openssl
DATE := $(shell date -u +%Y-%m-%d)

.PHONY: help deps build benchsuite generate lint test test-short bench bench-short bench-faults bench-peers demo clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install system packages (apt-get) and Go modules the targets need
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(GO) mod download
	$(BENCH_GO) mod download

build: deps benchsuite ## build every package and the commands into ./bin
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/...

benchsuite: ## build the suite's command into ./bin (from the bench module)
	$(BENCH_GO) build -o ../bin/ ./cmd/benchsuite

generate: deps ## regenerate the bpf2go output from bpf/*.c
	$(GO) generate ./bpf/...

lint: deps ## go vet, gofmt, staticcheck (pinned), no test code in the binary, and a generate-leaves-no-diff check
	$(GO) vet $(PKGS)
	$(BENCH_GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck $(PKGS)
# staticcheck for the bench module: the main module's pin, run on its packages.
	cd bench && $$($(GO) -C .. tool -n staticcheck) ./...
	@if $(GO) list -deps ./cmd/xdpnet | grep -qx testing; then echo "cmd/xdpnet links package testing"; exit 1; fi
	$(MAKE) --no-print-directory generate
	@git diff --exit-code --stat -- bpf/ || { echo "make generate changed committed files"; exit 1; }

test: deps ## every test with -race and -shuffle, the bufring debug-build tests, then the allocation tests without -race; privileged lab tests run when root
	$(GO) test -race -shuffle on -timeout $(TEST_TIMEOUT) $(PKGS)
	$(GO) test -race -shuffle on -tags bufring_debug -timeout $(TEST_TIMEOUT) ./bufring/...
	$(BENCH_GO) test -race -shuffle on -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -run 'Alloc' -timeout $(TEST_TIMEOUT) $(PKGS)
# 0-RTT to backends meets a data race inside quic-go (issue #4303): engine/early_test.go builds without -race.
	$(GO) test -count=1 -shuffle on -run 'TestEarlyData' -timeout $(TEST_TIMEOUT) ./engine/

test-short: deps ## the same, -short (quick loop while developing)
	$(GO) test -short -race -timeout $(TEST_TIMEOUT) $(PKGS)
	$(BENCH_GO) test -short -race -timeout $(TEST_TIMEOUT) ./...

bench: build ## run the benchmark suite (as root for the lab parts): bench/results/<date>.json, BENCH.md, bench/plots
	./bin/benchsuite -out bench/results/$(DATE).json -md BENCH.md -plots bench/plots -benchtime $(BENCH_TIME)

bench-short: benchsuite ## the suite in short mode (seconds per figure); results to bench/results/<date>-short.json only
	./bin/benchsuite -short -out bench/results/$(DATE)-short.json -md '' -plots ''

bench-faults: deps ## run the issue 17 fault suite (third-party origins and clients, no -race) and keep its FIGURES lines in bench/faults-<date>.txt
	@mkdir -p bench
	@set -o pipefail; { echo "# make bench-faults at $$(git rev-parse --short HEAD), $$(date -u +%FT%TZ), load $$(cut -d' ' -f1-3 /proc/loadavg)"; \
		$(GO) test -count=1 -run 'TestFault|TestLabOriginDownThenBack' -v -timeout 20m ./engine/ | grep -E 'FIGURES|origin served again|^(--- |ok|FAIL)'; } | tee bench/faults-$(DATE).txt

bench-peers: deps ## xdpnet beside HAProxy, nginx and Caddy, HTTP/1.1 and HTTPS (issues 21, 22; root; bench/peers/README.md)
	$(GO) build -o bin/ ./cmd/xdpnet
	XDPNET=$(CURDIR)/bin/xdpnet bash bench/peers/run.sh

demo: build ## build the lab, run the engine on its embedded config under a bounded load
	./bin/xdpnet demo

clean: ## remove build output
	rm -rf bin
