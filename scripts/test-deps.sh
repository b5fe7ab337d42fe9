#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: redis-server and postgresql (Debian packages,
# as root).
# Elsewhere it says exactly what to install and fails.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# make, for test/packaging's check that the Dockerfile builds what make build builds.
command -v make >/dev/null 2>&1 || need_apt+=(make)
# shellcheck, for actionlint to check the workflows' run: scripts (scripts/lint-workflows.sh).
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
# The sql task's tests start their own server with initdb and postgres (internal/testkit/pgtest), which Debian
# keeps in /usr/lib/postgresql/<version>/bin, off PATH.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]}; install with: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

# helm, for the chart tests (test/packaging): built with go into $(go env GOPATH)/bin, which the
# Makefile puts on PATH. Takes a minute or two the first time.
gobin="$(go env GOPATH | cut -d: -f1)/bin"
if ! command -v helm >/dev/null 2>&1 && [[ ! -x "$gobin/helm" ]]; then
  echo "installing helm v3.22.0 with go install" >&2
  go install helm.sh/helm/v3/cmd/helm@v3.22.0
fi
