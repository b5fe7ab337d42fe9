#!/usr/bin/env bash
# Shows that the release build is complete and reproducible, offline: builds it twice as a snapshot
# (make release-snapshot: goreleaser release --snapshot --clean, with the Go module proxy switched off)
# and checks that
#   * there is an archive and an SPDX SBOM for linux/amd64, linux/arm64 and darwin/arm64, and checksums.txt
#     lists every archive with its right checksum;
#   * the second build's checksums.txt and archives are byte for byte the first's (the SBOMs too, but for
#     the creation time and random document namespace syft writes into them);
#   * each binary is the one make build gives for the same platform, version and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(go env GOPATH | cut -d: -f1)/bin:$PATH"
export PATH

scripts/release-tools.sh
goreleaser check
go mod download # the only step that may use the network: the builds below run with GOPROXY=off

platforms=(linux_amd64 linux_arm64 darwin_arm64)
first=$(mktemp -d)
trap 'rm -rf "$first"' EXIT

# sbom_without_clock prints an SBOM without the fields syft fills from the clock and a random UUID.
sbom_without_clock() {
  sed -E 's/"created": *"[^"]*"//; s/"documentNamespace": *"[^"]*"//' "$1"
}

for run in 1 2; do
  echo "release-check: snapshot build $run" >&2
  GOPROXY=off GOFLAGS=-mod=readonly make --no-print-directory release-snapshot >"$first/build-$run.log" 2>&1 ||
    { cat "$first/build-$run.log" >&2; exit 1; }
  for p in "${platforms[@]}"; do
    archive=$(compgen -G "dist/peerdb-maintenance_*_${p}.tar.gz") || { echo "no archive for $p in dist/" >&2; exit 1; }
    [[ -s $archive.spdx.json ]] || { echo "no SBOM $archive.spdx.json" >&2; exit 1; }
    grep -q '"spdxVersion": *"SPDX-2' "$archive.spdx.json" || { echo "$archive.spdx.json is not an SPDX document" >&2; exit 1; }
    grep -q 'github.com/redis/go-redis/v9' "$archive.spdx.json" ||
      { echo "$archive.spdx.json does not list the binary's Go modules" >&2; exit 1; }
    grep -q " ${archive#dist/}\$" dist/checksums.txt || { echo "checksums.txt does not list $archive" >&2; exit 1; }
  done
  (cd dist && sha256sum --quiet -c checksums.txt)
  if [[ $run == 1 ]]; then
    cp dist/checksums.txt dist/*.tar.gz "$first/"
    for s in dist/*.spdx.json; do sbom_without_clock "$s" >"$first/$(basename "$s")"; done
  fi
done

cmp "$first/checksums.txt" dist/checksums.txt || { diff "$first/checksums.txt" dist/checksums.txt >&2; exit 1; }
for a in dist/*.tar.gz; do cmp "$first/$(basename "$a")" "$a"; done
for s in dist/*.spdx.json; do
  sbom_without_clock "$s" | cmp "$first/$(basename "$s")" - || { echo "$s differs between the builds" >&2; exit 1; }
done

version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' dist/metadata.json)
commit=$(git rev-parse --short HEAD)
for p in "${platforms[@]}"; do
  binary=$(compgen -G "dist/peerdb-maintenance_${p}*/peerdb-maintenance") || { echo "no $p binary in dist/" >&2; exit 1; }
  GOOS=${p%_*} GOARCH=${p#*_} make --no-print-directory build BIN="$first/make-build-$p" VERSION="$version" COMMIT="$commit" >/dev/null
  cmp "$first/make-build-$p" "$binary" ||
    { echo "goreleaser's $p binary is not what make build VERSION=$version COMMIT=$commit gives" >&2; exit 1; }
done

echo "release-check: two snapshot builds give identical checksums:"
cat dist/checksums.txt
