#!/usr/bin/env bash
# Run every fuzz target for a bounded time, one at a time (go test -fuzz takes one target per run).
# Plain `go test` already runs each target's committed seed corpus (testdata/fuzz/<target>/); this
# explores beyond it. A finding fails the run and go writes the failing input under testdata/fuzz/:
# commit it with the fix, so that it stays a regression test.
#
#   scripts/fuzz.sh             each target for FUZZTIME (default 10s): under a minute in all
#   FUZZTIME=5m scripts/fuzz.sh longer, by hand
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}
# Minimizing every new interesting input may take a minute by default; keep the bound honest.
MINIMIZE=${FUZZMINIMIZETIME:-2s}

targets=(
	"./tasks FuzzParseTaskFile"
	"./tasks FuzzConstraint"
	"./internal/version FuzzVersionParse"
)

status=0
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: $name ($pkg) for $FUZZTIME"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" "$pkg"; then
		echo "fuzz: $name found a failing input: see $pkg/testdata/fuzz/$name/" >&2
		status=1
	fi
done
exit $status
