#!/bin/sh
# A stand-in for PeerDB's catalog migrator (peerdb-server with PEERDB_MIGRATIONS_ONLY=true, as PeerDB's
# compose file and Helm chart run it): it applies $MIGRATIONS_DIR/V<n>__<name>.sql in order (fewer than
# ten files: the glob's order is the version order), each once, each in one transaction together with
# its schema_history row, as refinery does. Each run is written to migrator_runs with the times it began
# and finished, so that a test can order it against the pause and the resume.
set -eu
if [ "${PEERDB_MIGRATIONS_ONLY:-}" != true ]; then
	echo "migrate.sh: PEERDB_MIGRATIONS_ONLY is not true: this would start the server" >&2
	exit 64
fi
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
run=$(q -c "INSERT INTO migrator_runs (began, fencing_token) VALUES (clock_timestamp(), ${MAINTENANCE_FENCING_TOKEN:-0}) RETURNING id")
for f in "$MIGRATIONS_DIR"/V*__*.sql; do
	v=$(basename "$f" | sed 's/^V\([0-9]*\)__.*/\1/')
	if [ "$(q -c "SELECT count(*) FROM schema_history WHERE version = $v")" = 0 ]; then
		echo "migrate.sh: applying $(basename "$f")"
		q --single-transaction -f "$f" -c "INSERT INTO schema_history (version, applied) VALUES ($v, clock_timestamp())"
	fi
done
q -c "UPDATE migrator_runs SET finished = clock_timestamp() WHERE id = $run"
