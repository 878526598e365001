# bulkbackup: the two commands of the quick start are `make demo` and `make test`.
GO        ?= go
BIN       := bin
DEMO_DIR  ?= .demo
DEMO_SIZE ?= 512MiB
TEST_FLAGS ?= -race -count=1 -timeout 30m
# VERSION is what --version prints (pkg/version); empty falls back to the
# VCS revision the go command records.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS   := -X github.com/bulkbackup/bulkbackup/pkg/version.Version=$(VERSION)
# PREFIX, if set, makes install copy the binaries to $(PREFIX)/bin instead.
PREFIX    ?=

.PHONY: all build install image demo test test-short vet bench minio clean fmt fleet-up fleet-down

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/... ./scripts/mkvolume ./scripts/mkcorpus

# install: bulkctl, coordinator, reader and compressor into $(go env GOBIN),
# else $(go env GOPATH)/bin (go install), or into $(PREFIX)/bin.
install:
ifeq ($(PREFIX),)
	$(GO) install -ldflags "$(LDFLAGS)" ./cmd/...
else
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	install -d "$(PREFIX)/bin"
	install -m 0755 $(BIN)/bulkctl $(BIN)/coordinator $(BIN)/reader $(BIN)/compressor "$(PREFIX)/bin/"
endif

# image: the container image of compose.yaml (Dockerfile target bulkbackup),
# stamped with VERSION as the binaries are (compose.yaml passes BULK_VERSION:
# BULK_VERSION=$$(git describe --tags --always --dirty) docker compose build).
image:
	docker build --build-arg VERSION=$(VERSION) --target bulkbackup -t bulkbackup:latest .

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
