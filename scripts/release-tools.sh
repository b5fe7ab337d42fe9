#!/usr/bin/env bash
# Installs what the release build needs when it is missing, into $(go env GOPATH)/bin:
# goreleaser (go install, a few minutes the first time) and syft, which makes the SBOMs (go install
# from its module; release CI uses the prebuilt one instead).
set -euo pipefail
# renovate: datasource=go depName=github.com/goreleaser/goreleaser/v2
GORELEASER_VERSION=v2.15.1
# renovate: datasource=go depName=github.com/anchore/syft
SYFT_VERSION=v1.57.1
gobin="$(go env GOPATH | cut -d: -f1)/bin"
if [[ ! -x $gobin/goreleaser ]] || ! "$gobin/goreleaser" --version 2>/dev/null | grep -Eq "GitVersion: *v?${GORELEASER_VERSION#v}\$"; then
  echo "installing goreleaser $GORELEASER_VERSION with go install" >&2
  go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION"
fi
if ! command -v syft >/dev/null 2>&1 && [[ ! -x $gobin/syft ]]; then
  echo "installing syft $SYFT_VERSION with go install" >&2
  go install "github.com/anchore/syft/cmd/syft@$SYFT_VERSION"
fi
