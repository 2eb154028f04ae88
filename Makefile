# Cell: make demo (install, build, start celld, launch a Debian container),
# make test (the whole suite), make bench (celld against LXD 5.0.2).
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: all build deps test unit integration lint demo bench clean

all: build

build:
	$(GO) build -o bin/celld ./daemon/celld
	$(GO) build -o bin/c ./cli/c

deps:
	bash scripts/install-deps.sh

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Unit tests need nothing but Go; integration tests (tests/) need root,
# liblxc and the test images, which they build and cache themselves.
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /tests)

integration: build
	$(GO) test -count=1 -timeout 60m -v ./tests/... 2>&1 | tee .test-integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

test: deps lint build
	$(GO) test -count=1 -timeout 60m ./...

demo: deps build
	bash scripts/demo.sh

bench: deps build
	bash scripts/bench.sh

clean:
	rm -rf bin

# Fuzz the parsers of what image servers and images send (each target for
# FUZZTIME); `make test` already runs their seed corpora as unit tests.
.PHONY: fuzz
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzProductsPaths$$' -fuzztime $(FUZZTIME) ./client/simplestreams
	$(GO) test -run '^$$' -fuzz '^FuzzParseProducts$$' -fuzztime $(FUZZTIME) ./client/simplestreams
	$(GO) test -run '^$$' -fuzz '^FuzzParseMetadata$$' -fuzztime $(FUZZTIME) ./images
