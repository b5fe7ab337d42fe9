package tasks

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/pgtest"
)

// TestSQLTasksOfTwoHoldersSerialize runs against a PostgreSQL server of the test's own: what two holders'
// sql tasks may do at once is judged from timestamps the statements write and from pg_stat_activity.
func TestSQLTasksOfTwoHoldersSerialize(t *testing.T) {
	pg := pgtest.Start(t)
	dsnEnv := func(db string) map[string]string { return map[string]string{"CATALOG_DSN": pg.DSNFor(db)} }

	t.Run("two holders' identical sql tasks never execute at once", func(t *testing.T) {
		db := pg.NewDatabase(t)
		pg.QueryIn(t, db, "CREATE TABLE runs (token bigint, started timestamptz, finished timestamptz)")
		task := `{dsn_env: CATALOG_DSN, statements: [
  "INSERT INTO runs (token, started) VALUES (current_setting('peerdb_maintenance.fencing_token')::bigint, clock_timestamp())",
  "SELECT pg_sleep(1)",
  "UPDATE runs SET finished = clock_timestamp() WHERE token = current_setting('peerdb_maintenance.fencing_token')::bigint"]}`
		first, second := loadSQL(t, task, dsnEnv(db)), loadSQL(t, task, dsnEnv(db))
		envA, _ := runEnv(t, nil)
		envA.FencingToken = 1
		envB, logB := runEnv(t, nil)
		envB.FencingToken = 2
		errA := make(chan error, 1)
		go func() { errA <- first.Run(context.Background(), envA) }()
		// The first holder is inside its statements (a stale holder paused by SIGSTOP would be too).
		waitFor(t, 30*time.Second, "the first holder's pg_sleep", func() bool {
			return pg.QueryIn(t, db, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1)' AND state = 'active'")[0][0] == "1"
		})
		if err := second.Run(context.Background(), envB); err != nil {
			t.Fatal(err)
		}
		if err := <-errA; err != nil {
			t.Fatal(err)
		}
		rows := pg.QueryIn(t, db, "SELECT a.finished <= b.started FROM runs a, runs b WHERE a.token = 1 AND b.token = 2")
		if len(rows) != 1 || rows[0][0] != "t" {
			t.Errorf("the second holder's transaction started before the first one's ended: %v", pg.QueryIn(t, db, "SELECT * FROM runs ORDER BY token"))
		}
		if !strings.Contains(logB.String(), "waiting for another holder's sql transaction") || !strings.Contains(logB.String(), "advisory lock taken") {
			t.Errorf("the wait for the advisory lock is not logged:\n%s", logB)
		}
	})

	t.Run("the wait for the advisory lock is bounded by the task's timeout", func(t *testing.T) {
		db := pg.NewDatabase(t)
		holder := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["SELECT 1"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		conn, err := holder.connect(context.Background(), env.Logger)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "BEGIN").ReadAll(); err != nil {
			t.Fatal(err)
		}
		if err := holder.serialize(context.Background(), conn, env); err != nil {
			t.Fatal(err)
		}
		waiter := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["SELECT 1"]}`, dsnEnv(db))
		ctx, cancel := context.WithTimeoutCause(context.Background(), time.Second, errors.New("task timed out after 1s"))
		defer cancel()
		err = waiter.Run(ctx, env)
		if err == nil || !strings.Contains(err.Error(), "advisory lock") || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v, want the wait for the advisory lock stopped by the task's timeout", err)
		}
	})

	t.Run("a paused holder's idle transaction is ended by the server after the lock's TTL", func(t *testing.T) {
		db := pg.NewDatabase(t)
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["SELECT 1"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		env.LockTTL = time.Second
		conn, err := s.connect(context.Background(), env.Logger)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		pid := conn.PID()
		if _, err := conn.Exec(context.Background(), "BEGIN").ReadAll(); err != nil {
			t.Fatal(err)
		}
		if err := s.serialize(context.Background(), conn, env); err != nil {
			t.Fatal(err)
		}
		// The holder stops here, between two statements, with the advisory lock taken. The server ends
		// the session once it has sat idle in the transaction for the TTL; the bound allows for a
		// loaded machine.
		waitFor(t, 30*env.LockTTL, "the server to end the idle transaction", func() bool {
			return pg.QueryIn(t, db, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+itoa(pid))[0][0] == "0"
		})
		// The next holder's task takes the advisory lock without waiting.
		next, log := runEnv(t, nil)
		if err := s.Run(context.Background(), next); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log.String(), "waiting for another holder") {
			t.Errorf("the next holder waited for the advisory lock of a transaction the server ended:\n%s", log)
		}
	})
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// waitFor polls cond until it holds or bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
