#!/usr/bin/env bash
# The test suite: install what it needs when missing, check formatting, vet, and run every test with the
# race detector against real redis-server and PostgreSQL processes it starts itself. `make test` runs this;
# it needs nothing but Go and bash (and root with apt-get for the installs on a fresh Debian machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(go env GOPATH | cut -d: -f1)/bin:$PATH"
export PATH

scripts/test-deps.sh
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
  echo "not gofmt-ed: $unformatted" >&2
  exit 1
fi
go vet ./...
scripts/lint-workflows.sh
go test -race -count=1 -timeout 20m ./...
# The packaging checks: a module of their own (test/packaging), so that Kubernetes' types, the Compose
# loader and BuildKit's parser stay out of the product's go.mod.
(cd test/packaging && go vet ./... && go test -count=1 -timeout 15m ./...)
