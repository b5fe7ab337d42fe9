// Package redistest starts real redis-server processes on free loopback ports for tests. When
// redis-server is missing a test is skipped, except under CI=true, where it fails.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	Port int
	Addr string
	Dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	// dial connects for the readiness check; nil means plain TCP.
	dial func() (net.Conn, error)
}

// Binary returns the path of redis-server, skipping the test when it is missing (failing under CI).
func Binary(t testing.TB) string {
	t.Helper()
	return need(t, "redis-server")
}

func need(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: install it (Debian: apt-get install redis-server)", name)
		}
		t.Skipf("%s not found: install it (Debian: apt-get install redis-server)", name)
	}
	return path
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a redis-server on a free loopback port with no persistence, plus extra config
// arguments ("--requirepass", "secret"), and waits until it answers. It is killed when the test ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	Binary(t)
	port := FreePort(t)
	s := &Server{t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir()}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.Dir, "--logfile", filepath.Join(s.Dir, "redis.log")}, extra...)
	t.Cleanup(s.Kill) // before start: a server that never gets ready is killed too
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(Binary(s.t), s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	s.WaitReady()
}

// WaitReady waits until the server accepts TCP connections and answers PING (or asks for a password).
func (s *Server) WaitReady() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server exited at start:\n%s", log)
		default:
		}
		c, err := s.dialer()()
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Close()
			if n > 0 && !strings.HasPrefix(string(buf[:n]), "-LOADING") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer within 10s", s.Addr)
}

// dialer returns how WaitReady connects: plain TCP unless the server speaks only TLS.
func (s *Server) dialer() func() (net.Conn, error) {
	if s.dial != nil {
		return s.dial
	}
	return func() (net.Conn, error) { return net.DialTimeout("tcp", s.Addr, time.Second) }
}

// Kill stops the server with SIGKILL and waits for it to exit. Killing a dead server does nothing.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Signal sends sig to the server process (SIGSTOP and SIGCONT freeze and thaw it, as a stalled host
// would). Signalling a server that is not running does nothing.
func (s *Server) Signal(sig os.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart kills the server and starts it again on the same port with the same arguments. Data is
// lost, as after a crash of a Redis without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// RestartEmpty kills the server and starts it again on the same port with the same arguments, but
// without its data files (the default snapshot and append-only file names): a Redis that forgot every
// key, as after a restart without persistence, even when the server was started with persistence.
func (s *Server) RestartEmpty() {
	s.t.Helper()
	s.Kill()
	for _, name := range []string{"dump.rdb", "appendonly.aof", "appendonlydir"} {
		if err := os.RemoveAll(filepath.Join(s.Dir, name)); err != nil {
			s.t.Fatalf("remove redis-server's data: %v", err)
		}
	}
	s.start()
}

// StartAgain starts a killed server again on the same port with the same arguments (and whatever data
// files it left): the end of an outage.
func (s *Server) StartAgain() {
	s.t.Helper()
	s.start()
}

// URL returns redis://127.0.0.1:port/0.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr) }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Eventually polls cond every 10ms until it is true or timeout passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf(msg, args...)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
