#!/usr/bin/env bash
# make mutate: proves that deleting a safeguard fails a test. First the hand-made mutants of every Lua
# fence and safeguard (scripts/mutate, a few minutes; exit 1 when one survives), then gremlins' generated
# mutants over runner/ and lock/ (long on a small machine: each mutant runs the package's tests; their
# score and the survivors are reported in docs/testing.md). GREMLINS=0 skips the second part.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(go env GOPATH | cut -d: -f1)/bin:$PATH"
export PATH

scripts/test-deps.sh
go run ./scripts/mutate "$@"

if [[ ${GREMLINS:-1} != 0 ]]; then
  if ! command -v gremlins >/dev/null 2>&1; then
    echo "installing gremlins v0.6.0 with go install" >&2
    go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
  fi
  for pkg in ./lock ./runner; do
    # Tests start real redis-server processes: one worker, and a generous timeout per mutant.
    gremlins unleash --workers 1 --timeout-coefficient 10 "$pkg"
  done
fi
