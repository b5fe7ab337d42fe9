package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// migratePackage is the peer measured beside the fast path: golang-migrate's command, built with only
// its PostgreSQL driver, installed by the bench into a directory of its own (never the product's go.mod).
const (
	migratePackage = "github.com/golang-migrate/migrate/v4/cmd/migrate"
	migrateVersion = "v4.20.1"
)

// peer is a peer tool's run with nothing to do, measured beside the fast path.
type peer struct {
	name    string
	bin     string
	args    []string
	missing string // why it is not measured, when bin is ""
	dsn     string
	table   string
}

// installPeer installs golang-migrate and prepares a no-op run: a migrations directory whose one migration
// (SELECT 1) is applied once here, so that every measured `up` connects, reads its version table, finds
// nothing to apply and exits 0. (An empty directory is an error for migrate: "first .: file does not
// exist".) It never fails the bench: what went wrong is reported in the table instead.
func installPeer(ctx context.Context, tmp, dsn string) *peer {
	p := &peer{name: "golang-migrate " + migrateVersion + " `up`, nothing to apply", dsn: dsn,
		table: "bench_migrate_" + strconv.Itoa(os.Getpid())}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	gobin := filepath.Join(tmp, "gobin")
	cmd := exec.CommandContext(ctx, "go", "install", "-tags", "postgres", migratePackage+"@"+migrateVersion)
	cmd.Dir = tmp // outside the module: go install pkg@version never reads or writes the product's go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		p.missing = fmt.Sprintf("go install %s@%s failed: %v: %s", migratePackage, migrateVersion, err, lastLine(string(out)))
		return p
	}
	dir := filepath.Join(tmp, "migrations")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.missing = err.Error()
		return p
	}
	if err := os.WriteFile(filepath.Join(dir, "1_noop.up.sql"), []byte("SELECT 1;\n"), 0o644); err != nil {
		p.missing = err.Error()
		return p
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	p.args = []string{"-path", dir, "-database", dsn + sep + "x-migrations-table=" + p.table, "up"}
	bin := filepath.Join(gobin, "migrate")
	if run, err := runProc(ctx, bin, 30*time.Second, nil, p.args...); err != nil || run.code != 0 {
		p.missing = fmt.Sprintf("migrate up against %s failed (is PostgreSQL running?): %v %s", redactDSN(dsn), err, lastLine(run.stderrText()))
		return p
	}
	p.bin = bin
	return p
}

// cleanup drops the version table migrate created.
func (p *peer) cleanup() {
	if p.table == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP TABLE IF EXISTS "+p.table).ReadAll()
}

func (p *proc) stderrText() string {
	if p == nil {
		return ""
	}
	return p.stderr.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// redactDSN hides the password of a postgres:// URL for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the PostgreSQL DSN"
	}
	return u.Redacted()
}
