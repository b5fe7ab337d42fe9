#!/usr/bin/env bash
# The version policy, checked before anything is published (.github/workflows/release.yml):
#
#   scripts/release-version.sh vX.Y.Z          the tag is semver with a leading v; the chart's version
#                                              and appVersion are X.Y.Z; CHANGELOG.md has a section
#                                              "## [X.Y.Z] - YYYY-MM-DD"
#   scripts/release-version.sh --notes vX.Y.Z  prints that section (the release notes)
#
# ROOT (default: the repository) is where Chart.yaml and CHANGELOG.md are read.
set -euo pipefail
notes=false
if [[ ${1:-} == --notes ]]; then
  notes=true
  shift
fi
tag=${1:?usage: release-version.sh [--notes] vX.Y.Z}
root=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
chart=$root/charts/peerdb-maintenance/Chart.yaml
changelog=$root/CHANGELOG.md

semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
if [[ ! $tag =~ $semver ]]; then
  echo "tag $tag: want vMAJOR.MINOR.PATCH (semver with a leading v), e.g. v1.2.3 or v1.2.3-rc.1" >&2
  exit 1
fi
version=${tag#v}

# The section of CHANGELOG.md for $version, without its heading.
section() {
  awk -v v="$version" '
    index($0, "## [" v "]") == 1 { found = 1; next }
    found && /^## \[/ { exit }
    found { print }
  ' "$changelog"
}

if $notes; then
  section
  exit 0
fi

status=0
field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$chart"; }
for key in version appVersion; do
  got=$(field "$key")
  if [[ $got != "$version" ]]; then
    echo "$chart: $key is \"$got\", want \"$version\" for tag $tag" >&2
    status=1
  fi
done
if ! grep -Eq "^## \[$(printf '%s' "$version" | sed 's/[.]/\\./g')\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$" "$changelog"; then
  echo "$changelog: no section \"## [$version] - YYYY-MM-DD\" for tag $tag" >&2
  status=1
elif [[ -z $(section | tr -d '[:space:]') ]]; then
  echo "$changelog: the section of $version is empty" >&2
  status=1
fi
exit $status
