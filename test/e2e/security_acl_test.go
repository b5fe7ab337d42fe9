package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// The least-privilege ACL user of docs/security.md runs the whole gate, and the gate writes nothing
// but its termination log.

const aclUser = "peerdb-maintenance"

// documentedACL returns the ACL SETUSER rules for the gate's user in docs/security.md, one list per
// line, with the password filled in: the test grants exactly what the documentation says.
func documentedACL(t *testing.T, password string) [][]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rules [][]string
	for _, line := range strings.Split(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(line, "ACL SETUSER "+aclUser+" "); ok {
			rules = append(rules, strings.Fields(strings.ReplaceAll(rest, ">PASSWORD", ">"+password)))
		}
	}
	if len(rules) != 2 {
		t.Fatalf("docs/security.md has %d 'ACL SETUSER %s' lines, want the gate's and the redis task's", len(rules), aclUser)
	}
	return rules
}

// aclServer starts a redis-server whose default user needs a password and returns an admin client.
func aclServer(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, "--requirepass", "admin-pw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "admin-pw"})
	t.Cleanup(func() { _ = admin.Close() })
	return srv, admin
}

func setUser(t *testing.T, admin *redis.Client, rules ...[]string) {
	t.Helper()
	for _, r := range rules {
		args := []any{"ACL", "SETUSER", aclUser}
		for _, a := range r {
			args = append(args, a)
		}
		if err := admin.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s %v: %v", aclUser, r, err)
		}
	}
}

func TestTheDocumentedLeastPrivilegeUserRunsTheWholeGate(t *testing.T) {
	srv, admin := aclServer(t)
	setUser(t, admin, documentedACL(t, "gate-pw")...)
	ctx := context.Background()
	for _, k := range []string{"peerdb:ui:cache:a", "peerdb:ui:cache:b", "peerdb:ui:session:c"} {
		admin.Set(ctx, k, "x", 0)
	}
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	tasksFile := filepath.Join(dir, "tasks.yaml")
	// The first task blocks on a FIFO until the test writes to it, so that a waiter really waits.
	os.WriteFile(tasksFile, []byte(`tasks:
  - name: hold
    exec: {command: [/bin/sh, -c, 'cat "$0" >/dev/null', `+release+`]}
  - name: bust-ui-cache
    redis: {unlink: ["peerdb:ui:cache:*"]}
`), 0o644)
	env := baseEnv(srv, "REDIS_URL", "redis://"+aclUser+":gate-pw@"+srv.Addr+"/0", "MAINTENANCE_TASKS_FILE", tasksFile)
	holderEnv, waiterEnv := clone(env, "MAINTENANCE_HOLDER", "holder"), clone(env, "MAINTENANCE_HOLDER", "waiter")

	holder := startReplica(t, holderEnv)
	redistest.Eventually(t, 20*time.Second, func() bool { return admin.Exists(ctx, gateKeys.Lock).Val() == 1 },
		"the holder never took the lock:\n%s", holder.stderr)
	// The documented user may not PSUBSCRIBE the channel (a pattern is checked literally against the
	// channel rules): the holder subscribes to it by name, and PUBSUB NUMSUB counts it beside the waiter.
	waiter := startReplica(t, waiterEnv)
	redistest.Eventually(t, 20*time.Second, func() bool {
		n, err := admin.PubSubNumSub(ctx, gateKeys.Events).Result()
		return err == nil && n[gateKeys.Events] == 2
	}, "the holder and the waiter never both subscribed to the events channel:\n%s\n%s", holder.stderr, waiter.stderr)
	if r := runGate(t, env, "status"); r.code != 0 || !strings.Contains(r.stdout, "held by holder") {
		t.Errorf("status while held: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	writeFIFO(t, release)
	for _, r := range []*replica{holder, waiter} {
		if code := r.wait(t); code != 0 {
			t.Fatalf("exit %d:\n%s", code, r.stderr)
		}
	}
	if strings.Contains(holder.stderr.String(), "could not listen for unlock --force's notice") {
		t.Errorf("the holder with the documented user does not listen for unlock --force's notice:\n%s", holder.stderr)
	}
	if !strings.Contains(waiter.stderr.String(), "another replica recorded the version") {
		t.Errorf("the waiter did not wait for the holder:\n%s", waiter.stderr)
	}
	if n, _ := admin.Exists(ctx, "peerdb:ui:cache:a", "peerdb:ui:cache:b").Result(); n != 0 {
		t.Errorf("the redis task left %d cache keys", n)
	}
	if n, _ := admin.Exists(ctx, "peerdb:ui:session:c").Result(); n != 1 {
		t.Error("the redis task removed a key its pattern does not match")
	}
	for _, c := range []struct {
		args []string
		says string
	}{{[]string{"history"}, "succeeded"}, {[]string{"status"}, "2.0.0"}, {[]string{"unlock"}, "was free"}} {
		if r := runGate(t, env, c.args...); r.code != 0 || !strings.Contains(r.stdout, c.says) {
			t.Errorf("%v as the ACL user: exit %d, want 0 and %q:\n%s%s", c.args, r.code, c.says, r.stdout, r.stderr)
		}
	}
}

func clone(env map[string]string, kv ...string) map[string]string {
	c := map[string]string{}
	for k, v := range env {
		c[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i]] = kv[i+1]
	}
	return c
}

// writeFIFO opens the FIFO for writing (which waits for its reader) and closes it, or fails after 30s.
func writeFIFO(t *testing.T, path string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			err = f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nobody read the FIFO within 30s")
	}
}

func TestAUserMissingACommandTheGateNeedsExits2SayingAuthenticationFailed(t *testing.T) {
	cases := []struct {
		missing string
		args    []string
	}{
		{"get", nil},                 // the first read: NOPERM at once
		{"evalsha", nil},             // the election
		{"eval", nil},                // loading a script the server does not have
		{"set", nil},                 // inside the lock script
		{"hgetall", nil},             // progress, after the lock is taken
		{"hset", nil},                // progress, inside a script
		{"xadd", nil},                // history, inside the record script
		{"publish", nil},             // the completion notice, inside the record script
		{"del", nil},                 // clearing progress, inside the record script
		{"time", nil},                // the fencing token, inside its script
		{"pttl", []string{"status"}}, // the TTL of a held lock
		{"xrevrange", []string{"history"}},
		{"pttl", []string{"unlock"}},
	}
	for _, c := range cases {
		t.Run("without "+c.missing, func(t *testing.T) {
			srv, admin := aclServer(t)
			rules := documentedACL(t, "gate-pw")
			if !slices.Contains(rules[0], "+"+c.missing) {
				t.Fatalf("docs/security.md does not grant %s", c.missing)
			}
			setUser(t, admin, slices.DeleteFunc(slices.Clone(rules[0]), func(r string) bool { return r == "+"+c.missing }))
			env := baseEnv(srv, "REDIS_URL", "redis://"+aclUser+":gate-pw@"+srv.Addr+"/0", "MAINTENANCE_CONNECT_TIMEOUT", "1m")
			args := c.args
			if args == nil {
				args = []string{"--", "true"}
			} else {
				// A held lock, so that status reads its TTL and unlock has something to remove.
				admin.Set(context.Background(), gateKeys.Lock, `tok{"holder":"stuck-pod","version":"1.0.0"}`, time.Minute)
			}
			r := runGate(t, env, args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			if r.took > 20*time.Second {
				t.Errorf("took %s: a refused command must not be retried", r.took)
			}
			if v, _ := admin.Get(context.Background(), gateKeys.Version).Result(); v != "" {
				t.Errorf("version %q recorded although the run exited 2", v)
			}
			if !strings.Contains(r.stderr, "authentication failed") || !strings.Contains(r.stderr, "permission") && !strings.Contains(r.stderr, "can't run this command") {
				t.Errorf("stderr does not say authentication failed and name the permission:\n%s", r.stderr)
			}
		})
	}
}

// TestGateRunWritesNothingButTheTerminationLog runs the gate as a non-root user (65532, as in the
// image, when the test runs as root) in a read-only working directory, TMPDIR and HOME: it must
// succeed, and only the termination log may change.
func TestGateRunWritesNothingButTheTerminationLog(t *testing.T) {
	srv := redistest.Start(t)
	// Not t.TempDir: its parent is closed to other users.
	root, err := os.MkdirTemp("", "readonly-root")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		_ = os.RemoveAll(root)
	})
	bin, work, termLog := filepath.Join(root, "peerdb-maintenance"), filepath.Join(root, "work"), filepath.Join(root, "termination-log")
	exe, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{bin, exe, 0o555}, {termLog, nil, 0o644}, {filepath.Join(work, "tasks.yaml"), []byte("tasks:\n  - name: noop\n    exec: {command: [/bin/true]}\n"), 0o444}} {
		os.MkdirAll(filepath.Dir(f.path), 0o755)
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := gateCmd(map[string]string{
		"PEERDB_DEPLOYMENT_VERSION": "2.0.0", "REDIS_URL": srv.URL(), "MAINTENANCE_TASKS_FILE": "tasks.yaml",
		"MAINTENANCE_TERMINATION_LOG": termLog, "TMPDIR": work, "HOME": work, "LOG_LEVEL": "debug",
	})
	cmd.Path, cmd.Args[0], cmd.Dir = bin, bin, work
	if os.Geteuid() == 0 {
		// Root ignores file modes: run as the image's user, who owns only the termination log.
		if err := os.Chown(termLog, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	}
	for _, d := range []string{work, root} {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, root)
	r := runGateCmd(t, cmd)
	if r.code != 0 || strings.Contains(r.stderr, `"level":"WARN"`) {
		t.Fatalf("exit %d (or a warning) in a read-only root:\n%s", r.code, r.stderr)
	}
	after := snapshot(t, root)
	for p, st := range after {
		if p != termLog && st != before[p] {
			t.Errorf("%s was created or changed", p)
		}
	}
	if msg, _ := os.ReadFile(termLog); !strings.Contains(string(msg), "version 2.0.0: recorded") {
		t.Errorf("termination log = %q, want the outcome", msg)
	}
	if v := getKey(t, srv, gateKeys.Version); v != "2.0.0" {
		t.Errorf("recorded version %q", v)
	}
}

// snapshot maps every path under root to its mode, size and modification time.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m[p] = fmt.Sprintf("%s %s %d", info.Mode(), info.ModTime(), info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
