package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is one redis-server process the bench owns, on a free loopback port, without persistence.
type redisServer struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	client *redis.Client
}

// startRedis starts a redis-server on a free loopback port (never 6379, the shared one) and waits until
// it answers PING.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: install it (Debian: apt-get install redis-server)")
	}
	var lastErr error
	for range 3 { // a free port can be taken between the check and redis-server's bind
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"))
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		s.client = redis.NewClient(&redis.Options{Addr: s.addr, Protocol: 2, DisableIdentity: true})
		if lastErr = s.waitReady(ctx); lastErr == nil {
			return s, nil
		}
		s.stop()
	}
	return nil, lastErr
}

func freePort() (int, error) {
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != 6379 {
			return port, nil
		}
	}
	return 0, errors.New("free port: no port found")
}

func (s *redisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis-"+s.addr[strings.LastIndexByte(s.addr, ':')+1:]+".log"))
			return fmt.Errorf("redis-server exited at start:\n%s", log)
		default:
		}
		if err := s.client.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s did not answer within 10s", s.addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// url is the REDIS_URL of the server.
func (s *redisServer) url() string { return "redis://" + s.addr + "/0" }

// stop kills the server and waits for it to exit.
func (s *redisServer) stop() {
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// reset empties the server and its command statistics, so that what follows is counted alone.
func (s *redisServer) reset(ctx context.Context) error {
	if err := s.client.FlushAll(ctx).Err(); err != nil {
		return err
	}
	return s.resetStats(ctx)
}

func (s *redisServer) resetStats(ctx context.Context) error {
	return s.client.ConfigResetStat(ctx).Err()
}

// commandStats returns the calls per command since the last reset, without the bench's own
// CONFIG RESETSTAT.
func (s *redisServer) commandStats(ctx context.Context) (map[string]int, error) {
	info, err := s.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	stats := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") || name == "config|resetstat" {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.Atoi(v)
				stats[name] = n
			}
		}
	}
	return stats, nil
}

// version returns redis_version from INFO server.
func (s *redisServer) version(ctx context.Context) string {
	info, err := s.client.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "unknown"
}
