# bulkbackup: the two commands of the quick start are `make demo` and `make test`.
GO        ?= go
BIN       := bin
DEMO_DIR  ?= .demo
DEMO_SIZE ?= 512MiB
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: all build demo test test-short vet bench minio clean fmt fleet-up fleet-down

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./scripts/mkvolume ./scripts/mkcorpus

# demo: make a sample volume, back it up through the in-process fleet, restore
# it, verify it against the source, and print throughput and ratio.
demo: build
	@bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_SIZE)"

# test: every test, with the race detector. Integration tests start a real
# MinIO (built by scripts/install-minio.sh) and embedded NATS servers.
test: vet
	BULK_MINIO_BIN="$$(bash scripts/install-minio.sh)" $(GO) test $(TEST_FLAGS) ./...

test-short: vet
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# bench: the benchmark suite (not part of make test); see docs/benchmarks.md.
bench: build
	bash scripts/bench.sh

minio:
	bash scripts/install-minio.sh

# fleet-up: the compose.yaml topology as local processes under FLEET_DIR
# (default .fleet): 3 NATS nodes, MinIO, coordinator, reader, COMPRESSORS=N.
fleet-up:
	bash scripts/fleet-up.sh

# fleet-down: stop it; FLEET_CLEAN=1 also removes FLEET_DIR.
fleet-down:
	bash scripts/fleet-down.sh $(if $(FLEET_CLEAN),--clean)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) $(DEMO_DIR) .bench .fleet
