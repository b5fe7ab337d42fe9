package pgtest_test

import (
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/pgtest"
)

func TestStartedServerAnswersQueriesWithPasswordAuthentication(t *testing.T) {
	srv := pgtest.Start(t)
	db := srv.NewDatabase(t)
	rows := srv.QueryIn(t, db, "SELECT current_database(), current_user")
	if len(rows) != 1 || rows[0][0] != db || rows[0][1] != srv.User {
		t.Fatalf("got %v, want [[%s %s]]", rows, db, srv.User)
	}
}
