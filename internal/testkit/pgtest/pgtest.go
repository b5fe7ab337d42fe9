// Package pgtest starts PostgreSQL servers of a test's own: initdb into a temporary directory, then
// postgres on a free loopback port, with password authentication and no Unix socket. It never uses a
// shared server. Running as root, it runs the server as the postgres user (PostgreSQL refuses root).
// When the PostgreSQL binaries are missing a test is skipped, except under CI, where it fails.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Server is one PostgreSQL server owned by a test.
type Server struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string

	t    testing.TB
	bin  string
	dir  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// BinDir returns the directory holding initdb and postgres: the newest /usr/lib/postgresql/*/bin,
// else the directory of initdb on PATH. A test is skipped when there is none (failed under CI).
func BinDir(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(p)
		}
	}
	missing(t, "PostgreSQL's initdb and postgres not found: install them (Debian: apt-get install postgresql)")
	return ""
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var seq atomic.Int64

// New runs initdb for a server on a free loopback port without starting it, so that a test can start
// it later (Start) and watch a client wait for it. It is removed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t: t, bin: BinDir(t), Host: "127.0.0.1", Port: freePort(t),
		User: "postgres", Password: fmt.Sprintf("pgtest-secret-%d-%d", os.Getpid(), seq.Add(1)), Database: "postgres",
	}
	var err error
	// Not t.TempDir: its parent directory is private to root, and the server may run as postgres.
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		t.Fatalf("pgtest: temp dir: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(s.dir)
	})
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if os.Geteuid() == 0 {
		s.cred = postgresUser(t)
		for _, p := range []string{s.dir, pwfile} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				t.Fatalf("pgtest: chown %s: %v", p, err)
			}
		}
	}
	out, err := s.command("initdb", "-D", s.data(), "-U", s.User, "--pwfile="+pwfile, "--auth=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	return s
}

// Start runs a fresh server (New, then Start) and waits until it accepts connections.
func Start(t testing.TB) *Server {
	t.Helper()
	s := New(t)
	s.Start()
	return s
}

func postgresUser(t testing.TB) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		missing(t, "running as root and there is no postgres user to run PostgreSQL as (Debian's postgresql package creates it)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	logPath := filepath.Join(s.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("pgtest: %v", err)
	}
	defer logFile.Close()
	s.cmd = s.command("postgres", "-D", s.data(), "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses="+s.Host, "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=20", "-c", "shared_buffers=16MB")
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("pgtest: start postgres: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			log, _ := os.ReadFile(logPath)
			s.t.Fatalf("pgtest: postgres exited at start:\n%s", log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgconn.Connect(ctx, s.DSN())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pgtest: postgres on port %d not ready within 30s: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down (fast shutdown: clients are disconnected) and waits for it to exit.
// Stopping a server that is not running does nothing.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// DSN returns a URL for the server's default database, password included.
func (s *Server) DSN() string { return s.DSNFor(s.Database) }

// DSNFor returns a URL for database db on the server, password included.
func (s *Server) DSNFor(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", s.User, s.Password, s.Host, s.Port, db)
}

// NewDatabase creates an empty database for one test and returns its name.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", seq.Add(1))
	s.Exec(t, "CREATE DATABASE "+name)
	return name
}

// Exec runs sql on the default database, failing the test on error.
func (s *Server) Exec(t testing.TB, sql string) {
	t.Helper()
	s.QueryIn(t, s.Database, sql)
}

// QueryIn runs sql on database db and returns the rows of its last result as text, failing the test
// on error.
func (s *Server) QueryIn(t testing.TB, db, sql string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.DSNFor(db))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	if len(results) == 0 {
		return nil
	}
	var rows [][]string
	for _, r := range results[len(results)-1].Rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = string(v)
		}
		rows = append(rows, row)
	}
	return rows
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
