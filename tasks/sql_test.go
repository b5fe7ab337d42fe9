package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/pgtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// loadSQL decodes an sql task the way the task file loader does.
func loadSQL(t *testing.T, yaml string, env map[string]string) *SQL {
	t.Helper()
	specs, err := Parse([]byte("tasks:\n  - name: schema\n    sql: "+yaml+"\n"), "test", LoadContext{Getenv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0].Task.(*SQL)
	s.backoff = fastBackoff
	return s
}

// TestSQL runs against one PostgreSQL server of the test's own; each case has a database of its own.
func TestSQL(t *testing.T) {
	pg := pgtest.Start(t)
	dsnEnv := func(db string) map[string]string { return map[string]string{"CATALOG_DSN": pg.DSNFor(db)} }
	count := func(t *testing.T, db, table string) string {
		return pg.QueryIn(t, db, "SELECT count(*) FROM "+table)[0][0]
	}

	t.Run("inline statements run and commit together", func(t *testing.T) {
		db := pg.NewDatabase(t)
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["CREATE TABLE mirrors (name text)", "INSERT INTO mirrors VALUES ('a'), ('b')"]}`, dsnEnv(db))
		env, log := runEnv(t, nil)
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "mirrors"); n != "2" {
			t.Fatalf("mirrors has %s rows, want 2", n)
		}
		if strings.Contains(log.String(), pg.Password) {
			t.Errorf("the password reached the log:\n%s", log)
		}
	})

	t.Run("statements read the fencing token from the session setting", func(t *testing.T) {
		db := pg.NewDatabase(t)
		pg.QueryIn(t, db, "CREATE TABLE fence (token bigint)")
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["INSERT INTO fence SELECT current_setting('peerdb_maintenance.fencing_token')::bigint"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		env.FencingToken = 1<<62 + 7 // exact above 2^53
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if got := pg.QueryIn(t, db, "SELECT token FROM fence")[0][0]; got != strconv.FormatInt(env.FencingToken, 10) {
			t.Fatalf("the statement saw fencing token %s, want %d", got, env.FencingToken)
		}
	})

	t.Run("a stale writer is refused by a fence the statements keep", func(t *testing.T) {
		db := pg.NewDatabase(t)
		pg.QueryIn(t, db, "CREATE TABLE fence (token bigint); INSERT INTO fence VALUES (50)")
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["UPDATE fence SET token = current_setting('peerdb_maintenance.fencing_token')::bigint WHERE token < current_setting('peerdb_maintenance.fencing_token')::bigint", "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM fence WHERE token = current_setting('peerdb_maintenance.fencing_token')::bigint) THEN RAISE EXCEPTION 'stale fencing token'; END IF; END $$"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil) // token 42, older than the 50 the store has seen
		err := s.Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "stale fencing token") {
			t.Fatalf("a holder with token 42 after 50 was not refused: %v", err)
		}
	})

	t.Run("files run in order, each file holding several statements", func(t *testing.T) {
		db := pg.NewDatabase(t)
		dir := t.TempDir()
		writeFile(t, dir, "001.sql", "CREATE SCHEMA maintenance;\nCREATE TABLE maintenance.outputs (v text);\n")
		writeFile(t, dir, "002.sql", "INSERT INTO maintenance.outputs VALUES ('0.30.0');\n")
		s := loadSQL(t, `{dsn: "`+pg.DSNFor(db)+`", files: ["`+dir+`/001.sql", "`+dir+`/002.sql"]}`, nil)
		env, _ := runEnv(t, nil)
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "maintenance.outputs"); n != "1" {
			t.Fatalf("outputs has %s rows, want 1", n)
		}
	})

	t.Run("a failing statement rolls back the whole task and names the statement and its position", func(t *testing.T) {
		db := pg.NewDatabase(t)
		pg.QueryIn(t, db, "CREATE TABLE peers (name text); INSERT INTO peers VALUES ('src')")
		dir := t.TempDir()
		writeFile(t, dir, "002.sql", "UPDATE peers SET name = 'dst';\nUPDATE peers\n   SET name = no_such_column;\n")
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, files: ["`+dir+`/002.sql"]}`, dsnEnv(db))
		s.scripts = append([]sqlScript{{source: "statements[0]", text: "INSERT INTO peers VALUES ('added')"}}, s.scripts...)
		env, _ := runEnv(t, nil)
		err := s.Run(context.Background(), env)
		if err == nil {
			t.Fatal("want an error for the missing column")
		}
		for _, want := range []string{"statement 2 of 2", "002.sql", "line 3, column 15", "no_such_column", "42703", "near: SET name = no_such_column", "rolled back"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
		rows := pg.QueryIn(t, db, "SELECT name FROM peers")
		if len(rows) != 1 || rows[0][0] != "src" {
			t.Fatalf("peers holds %v after the failed task, want it unchanged: [[src]]", rows)
		}
	})

	t.Run("a statement that commits on its own is refused", func(t *testing.T) {
		db := pg.NewDatabase(t)
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["CREATE TABLE t (id int); COMMIT"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		err := s.Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "ended the task's transaction") {
			t.Fatalf("want an error about the ended transaction, got %v", err)
		}
	})

	t.Run("a statement that commits is named, and what it committed is not said to be rolled back", func(t *testing.T) {
		db := pg.NewDatabase(t)
		dir := t.TempDir()
		writeFile(t, dir, "001.sql", "CREATE TABLE t1 (x int);\nCOMMIT;\nBEGIN;\nCREATE TABLE t2 (x int);\nSELECT 1/0;\n")
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, files: ["`+dir+`/001.sql"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		err := s.Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "ended the task's transaction with COMMIT (what ran before that is committed") ||
			strings.Contains(err.Error(), "failed, transaction rolled back") {
			t.Fatalf("want an error saying the file committed part of the task, got %v", err)
		}
		if n := count(t, db, "pg_tables WHERE tablename IN ('t1', 't2')"); n != "1" {
			t.Fatalf("%s of t1, t2 exist, want t1 alone (committed by the file)", n)
		}
	})

	t.Run("rows a statement returns are read and dropped, not kept", func(t *testing.T) {
		db := pg.NewDatabase(t)
		// 100 MB of rows: kept in memory, as ReadAll does, they would be allocated at least once.
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["SELECT repeat('x', 1000) FROM generate_series(1, 100000)"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 50<<20 {
			t.Fatalf("the task allocated %d MiB for 100 MB of rows it does not use", got>>20)
		}
	})

	t.Run("a cancelled context stops the running statement with its cause and rolls back", func(t *testing.T) {
		db := pg.NewDatabase(t)
		pg.QueryIn(t, db, "CREATE TABLE peers (name text)")
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["INSERT INTO peers VALUES ('x')", "SELECT pg_sleep(300)"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		ctx, cancel := context.WithCancelCause(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, env) }()
		sleeping := func() bool {
			return pg.QueryIn(t, db, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(300)'")[0][0] == "1"
		}
		redistest.Eventually(t, 20*time.Second, sleeping, "the task's statement never started")
		sigterm := errors.New("interrupted by SIGTERM")
		cancel(sigterm)
		if err := <-done; !errors.Is(err, sigterm) {
			t.Fatalf("want the context's cause, got %v", err)
		}
		redistest.Eventually(t, 20*time.Second, func() bool { return !sleeping() }, "the cancelled statement still runs on the server")
		if n := count(t, db, "peers"); n != "0" {
			t.Fatalf("peers has %s rows after the stopped task, want 0", n)
		}
	})

	t.Run("the task timeout stops a long statement", func(t *testing.T) {
		db := pg.NewDatabase(t)
		s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["SELECT pg_sleep(300)"]}`, dsnEnv(db))
		env, _ := runEnv(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if err := s.Run(ctx, env); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want the task timeout, got %v", err)
		}
	})

	t.Run("PeerDB's catalog variables are used when there is no dsn", func(t *testing.T) {
		db := pg.NewDatabase(t)
		s := loadSQL(t, `{statements: ["CREATE TABLE from_catalog_env (id int)"]}`, map[string]string{
			"PEERDB_CATALOG_HOST": pg.Host, "PEERDB_CATALOG_PORT": strconv.Itoa(pg.Port), "PEERDB_CATALOG_USER": pg.User,
			"PEERDB_CATALOG_PASSWORD": pg.Password, "PEERDB_CATALOG_DATABASE": db,
		})
		env, _ := runEnv(t, nil)
		if err := s.Run(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "from_catalog_env"); n != "0" {
			t.Fatalf("table not created: count %s", n)
		}
	})

	t.Run("the example file's catalog step runs against PeerDB's variables and is safe to repeat", func(t *testing.T) {
		db := pg.NewDatabase(t)
		specs, err := LoadFile("../examples/tasks.yaml", LoadContext{Getenv: envOf(map[string]string{
			"PEERDB_CATALOG_HOST": pg.Host, "PEERDB_CATALOG_PORT": strconv.Itoa(pg.Port), "PEERDB_CATALOG_USER": pg.User,
			"PEERDB_CATALOG_PASSWORD": pg.Password, "PEERDB_CATALOG_DATABASE": db,
		}), GateTag: DefaultGateTag})
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range specs {
			if spec.Kind != "sql" {
				continue
			}
			env, _ := runEnv(t, nil)
			for range 2 {
				if err := spec.Task.Run(context.Background(), env); err != nil {
					t.Fatalf("%s: %v", spec.Name, err)
				}
			}
		}
		if n := count(t, db, "upgrade_notes.applied"); n != "1" {
			t.Fatalf("upgrade_notes.applied has %s rows, want 1", n)
		}
	})

	t.Run("a wrong password fails at once and the error does not hold it", func(t *testing.T) {
		wrong := "wrong-password-" + pg.Password
		s := loadSQL(t, `{dsn: "postgres://postgres:`+wrong+`@`+pg.Host+`:`+strconv.Itoa(pg.Port)+`/postgres?sslmode=disable", statements: ["SELECT 1"]}`, nil)
		env, log := runEnv(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // only bounds a broken test
		defer cancel()
		err := s.Run(ctx, env)
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "28P01") {
			t.Fatalf("want an authentication failure (28P01), got %v", err)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(log.String(), wrong) {
			t.Fatalf("the password reached the error or the log: %v\n%s", err, log)
		}
	})
}

func TestSQLWaitsForPostgreSQLToStartWithinTheTaskTimeout(t *testing.T) {
	pg := pgtest.New(t) // initialised, not started: connections are refused
	s := loadSQL(t, `{dsn_env: CATALOG_DSN, statements: ["CREATE TABLE after_start (id int)"]}`, map[string]string{"CATALOG_DSN": pg.DSN()})
	env, log := runEnv(t, nil)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), env) }()
	log.await(t, "attempt failed, retrying")
	pg.Start()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := pg.QueryIn(t, pg.Database, "SELECT count(*) FROM after_start")[0][0]; n != "0" {
		t.Fatalf("table not created: count %s", n)
	}
	if strings.Contains(log.String(), pg.Password) {
		t.Errorf("the password reached the log:\n%s", log)
	}
}

func TestSQLRefusedConnectionFailsAtTheTaskTimeoutWithoutThePassword(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) // nothing listens there: connections are refused
	s := loadSQL(t, `{dsn: "postgres://peerdb:hunter2-secret@`+addr+`/peerdb?sslmode=disable", statements: ["SELECT 1"]}`, nil)
	env, log := runEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := s.Run(ctx, env)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want the task timeout after refused connections, got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(log.String(), "hunter2") {
		t.Fatalf("the password reached the error or the log: %v\n%s", err, log)
	}
}

func TestSQLInvalidDSNIsReportedWithoutItsPassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://peerdb:hunter2@catalog:notaport/db",
		"host=catalog password=hunter2 port=notaport",
		"host=catalog password='hunter2' sslmode=sometimes",
	} {
		_, err := Parse([]byte("tasks:\n  - name: schema\n    sql: {dsn: \""+dsn+"\", statements: [SELECT 1]}\n"), "test", LoadContext{})
		if err == nil || !strings.Contains(err.Error(), "sql.dsn: line 3 column 16: not a valid PostgreSQL connection string") {
			t.Errorf("%s: want an invalid dsn error, got %v", RedactDSN(dsn), err)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestRedactDSNHidesPasswordsInEveryForm(t *testing.T) {
	cases := map[string]string{
		"postgres://peerdb:hunter2@catalog:5432/peerdb":           "postgres://peerdb:xxxxx@catalog:5432/peerdb",
		"postgresql://peerdb@catalog/peerdb?password=hunter2&x=1": "postgresql://peerdb@catalog/peerdb?password=xxxxx&x=1",
		"host=catalog password=hunter2 user=peerdb":               "host=catalog password=xxxxx user=peerdb",
		"host=catalog password = 'hunter 2' user=peerdb":          "host=catalog password = xxxxx user=peerdb",
		"postgres://peerdb:hun@ter2@catalog:bad/peerdb":           "postgres://xxxxx@catalog:bad/peerdb",
		"host=catalog user=peerdb":                                "host=catalog user=peerdb",
	}
	for in, want := range cases {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSQLFileThatNeverEndsIsRefusedAtLoad(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.sql")
	writeFile(t, filepath.Dir(huge), "huge.sql", "")
	if err := os.Truncate(huge, maxSQLFile+1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	for path, says := range map[string]string{"/dev/zero": "not a regular file but a character device", huge: "larger than 16 MiB"} {
		_, err := Parse([]byte("tasks:\n  - name: endless\n    sql: {dsn: 'postgres://u@127.0.0.1:1/db', files: ["+path+"]}\n"), "t.yaml", LoadContext{Getenv: func(string) string { return "" }})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Task != "endless" || fe.Field != "sql.files[0]" || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: err = %v, want a files[0] error saying %q", path, err, says)
		}
	}
}
