#!/usr/bin/env bash
# Lints the GitHub Actions workflows with actionlint (which also runs shellcheck on their run: scripts
# when shellcheck is installed; scripts/test-deps.sh installs it). Installs actionlint with go install
# when it is missing or another version. scripts/test.sh runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
# renovate: datasource=go depName=github.com/rhysd/actionlint
ACTIONLINT_VERSION=v1.7.12
gobin="$(go env GOPATH | cut -d: -f1)/bin"
actionlint="$gobin/actionlint"
if [[ ! -x $actionlint ]] || [[ $("$actionlint" -version | head -1) != "$ACTIONLINT_VERSION" ]]; then
  echo "installing actionlint $ACTIONLINT_VERSION with go install" >&2
  go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
if [[ -n ${CI:-} ]] && ! command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck missing: actionlint would not check the workflows' run: scripts (CI=true)" >&2
  exit 1
fi
"$actionlint" -no-color .github/workflows/ci.yml .github/workflows/release.yml
echo "actionlint: .github/workflows/ci.yml .github/workflows/release.yml pass"
