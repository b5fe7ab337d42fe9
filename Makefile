# peerdb-maintenance: build, run locally, test.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN     := bin/peerdb-maintenance
export PATH := $(shell go env GOPATH)/bin:$(PATH)

.PHONY: build run test chaos mutate bench image chart-readme release-snapshot release-check lint-workflows clean

## build: the static binary, exactly as the Dockerfile builds it
build:
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(BIN) .

## run: run the gate once against a local Redis (found on 127.0.0.1:6379 or started), with a sample task
run: build
	scripts/run-local.sh $(BIN)

## test: install what the tests need when missing, then check formatting, vet, and run every test with the race detector
test:
	scripts/test.sh

SEED     ?= 1
DURATION ?= 2m
ROUND    ?= 0

## chaos: replicas of the built gate under a seeded schedule of faults, checked from outside (SEED, DURATION; ROUND replays one round)
chaos:
	go test -tags chaos -count=1 -v -timeout 0 -run TestChaos ./test/chaos -args -chaos.seed=$(SEED) -chaos.duration=$(DURATION) -chaos.round=$(ROUND)

## mutate: every safeguard deleted in turn must fail a test (hand-made mutants, then gremlins over runner/ and lock/)
mutate:
	scripts/mutate.sh

## bench: measure fast path, startup storm, takeover, size and memory against their targets; writes BENCHMARKS.md (needs redis-server)
bench:
	go run ./bench -out BENCHMARKS.md

IMAGE ?= peerdb-maintenance:$(VERSION)

## image: the container image (needs a Docker engine with BuildKit)
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

## chart-readme: regenerate the chart's parameter table from the ## @param comments in values.yaml (needs npx)
chart-readme:
	npx --yes @bitnami/readme-generator-for-helm@2 --values charts/peerdb-maintenance/values.yaml --readme charts/peerdb-maintenance/README.md

## release-snapshot: the release's archives, checksums.txt and SBOMs in dist/, offline, without publishing (needs goreleaser and syft: scripts/release-tools.sh)
# goreleaser reads the commit (version, time stamps) only where git has a remote; a clone without one
# gets the project's URL through the environment, read-only: nothing is fetched and nothing published.
RELEASE_GIT_ENV := $(if $(shell git ls-remote --get-url 2>/dev/null),,GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/peerdb-maintenance/peerdb-maintenance.git)
release-snapshot:
	$(RELEASE_GIT_ENV) goreleaser release --snapshot --clean

## release-check: two release snapshots give identical checksums, and the binary is make build's
release-check:
	scripts/release-check.sh

## lint-workflows: actionlint on .github/workflows (make test runs it too)
lint-workflows:
	scripts/lint-workflows.sh

clean:
	rm -rf bin dist
