# okproxy — see README.md. Every target really runs.
SHELL := /bin/bash
GO ?= go
BIN := bin/okproxy
PKGS := ./...
# The database: DATABASE_URL when reachable, else a private throw-away cluster.
WITH_DB = eval "$$(scripts/db.sh up)" &&

.PHONY: help build test lint bench fuzz demo db-up db-down load clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/okproxy and the demo helpers
	$(GO) build -o $(BIN) ./cmd/okproxy
	$(GO) build -o bin/fakeokta ./cmd/fakeokta
	$(GO) build -o bin/devtool ./cmd/devtool

lint: ## go vet and gofmt check
	$(GO) vet $(PKGS)
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

test: lint ## vet, gofmt, and go test -race against a real PostgreSQL
	$(WITH_DB) $(GO) test -race -count=1 $(PKGS)

bench: ## Go benchmarks (policy, authn, proxy)
	$(WITH_DB) $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for t in $$(grep -rhoE '^func (Fuzz[A-Za-z0-9_]+)' --include='*_test.go' internal | sed 's/func //'); do \
	  pkg=$$(grep -rlE "^func $$t\(" --include='*_test.go' internal | xargs dirname); \
	  echo "== $$t ($$pkg)"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} ./$$pkg || exit 1; \
	done

demo: build ## run the product end to end (DEMO_EXIT=1 to stop after the walkthrough)
	$(WITH_DB) scripts/demo.sh

load: build ## load comparison against a bare reverse proxy (needs wrk)
	$(WITH_DB) scripts/load.sh

db-up: ## start (or reuse) the private PostgreSQL; prints the export line
	@scripts/db.sh up

db-down: ## stop and delete the private PostgreSQL
	@scripts/db.sh down

clean: ## remove build outputs
	rm -rf bin
