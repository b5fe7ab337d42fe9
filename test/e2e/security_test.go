package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/runner"
)

// Security of the built binary against real servers: passwords never printed, refused credentials
// and untrusted certificates fail at once, TLS with a private CA and client certificates works.
// The least-privilege ACL user and the read-only root filesystem are in security_acl_test.go.

// gateRun is one finished run of the binary.
type gateRun struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runGate runs the binary to its end with env (on top of PATH) and returns what it printed.
func runGate(t *testing.T, env map[string]string, args ...string) gateRun {
	t.Helper()
	return runGateCmd(t, gateCmd(env, args...))
}

func gateCmd(env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func runGateCmd(t *testing.T, cmd *exec.Cmd) gateRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within 60s:\n%s", cmd.Args, stderr.String())
	}
	r := gateRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPasswordsNeverAppearInAnyOutputAtAnyLogLevel(t *testing.T) {
	const (
		pw       = "S3cret-gate-pw"
		wrong    = "Wr0ng@guess/pw" // needs percent-encoding: both forms must stay hidden
		sentinel = "Sent1nel-only-pw"
	)
	secrets := []string{pw, wrong, url.QueryEscape(wrong), url.PathEscape(wrong), sentinel}
	srv := redistest.Start(t, "--requirepass", pw)
	dir := t.TempDir()
	tasksFile := filepath.Join(dir, "tasks.yaml")
	if err := os.WriteFile(tasksFile, []byte("tasks:\n  - name: noop\n    exec: {command: [/bin/true]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	termLog := filepath.Join(dir, "termination-log")
	good := "redis://app:" + pw + "@" + srv.Addr + "/0"
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: pw})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "app", "on", ">"+pw, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	down := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{"a run that records the version", map[string]string{"REDIS_URL": good}, []string{"--", "true"}, 0},
		{"the fast path", map[string]string{"REDIS_URL": good}, nil, 0},
		{"a dry run", map[string]string{"REDIS_URL": good, "PEERDB_DEPLOYMENT_VERSION": "2.1.0", "MAINTENANCE_DRY_RUN": "true"}, []string{"--", "true"}, 0},
		{"a failing task", map[string]string{"REDIS_URL": good, "PEERDB_DEPLOYMENT_VERSION": "2.1.0"}, []string{"--", "false"}, 1},
		{"status", map[string]string{"REDIS_URL": good}, []string{"status"}, 0},
		{"status --json", map[string]string{"REDIS_URL": good}, []string{"status", "--json"}, 0},
		{"history", map[string]string{"REDIS_URL": good}, []string{"history"}, 0},
		{"history --json", map[string]string{"REDIS_URL": good}, []string{"history", "--json"}, 0},
		{"unlock", map[string]string{"REDIS_URL": good}, []string{"unlock"}, 0},
		{"validate", map[string]string{"REDIS_URL": good, "MAINTENANCE_TASKS_FILE": tasksFile}, []string{"validate"}, 0},
		{"a wrong password", map[string]string{"REDIS_URL": "redis://app:" + url.PathEscape(wrong) + "@" + srv.Addr + "/0"}, nil, 2},
		{"an unreachable host with a password in the URL", map[string]string{"REDIS_URL": "redis://app:" + pw + "@" + down + "/0"}, nil, 3},
		{"an unknown query parameter in a URL with a password", map[string]string{"REDIS_URL": good + "?colour=blue"}, nil, 2},
		{"a bad query value in a URL with a password", map[string]string{"REDIS_URL": good + "?dial_timeout=" + pw}, []string{"status"}, 2},
		{"a password with an unencoded slash and at sign", map[string]string{"REDIS_URL": "redis://app:" + wrong + "@" + srv.Addr + "/0"}, nil, 2},
		{"a password in a query parameter of a standalone URL", map[string]string{"REDIS_URL": "redis://" + srv.Addr + "/0?password=" + pw}, nil, 2},
		{"a Sentinel URL with the sentinel's password and the master's", map[string]string{"REDIS_URL": "redis://:" + sentinel + "@" + down + "?master_name=mymaster&password=" + pw}, nil, 3},
		{"a Sentinel URL with sentinel_password", map[string]string{"REDIS_URL": "redis://" + down + "?master_name=mymaster&password=" + pw + "&sentinel_password=" + sentinel}, []string{"status"}, 2},
		{"an sql task with a password in its DSN that cannot connect", map[string]string{"REDIS_URL": good, "PEERDB_DEPLOYMENT_VERSION": "3.0.0", "MAINTENANCE_TASKS_FILE": taskFile(t, dir, "sql",
			"sql: {dsn: 'postgres://peerdb:"+pw+"@"+down+"/peerdb', statements: ['SELECT 1']}\n    timeout: 1s")}, nil, 1},
		{"an http task with a password in its URL that cannot connect", map[string]string{"REDIS_URL": good, "PEERDB_DEPLOYMENT_VERSION": "3.0.0", "MAINTENANCE_TASKS_FILE": taskFile(t, dir, "http",
			"http: {url: 'http://hook:"+pw+"@"+down+"/done'}\n    timeout: 1s")}, nil, 1},
		{"a TLS client certificate for a plain URL with a password", map[string]string{"REDIS_URL": good, "REDIS_CERT_FILE": "/c.pem", "REDIS_KEY_FILE": "/k.pem"}, nil, 2},
	}
	for _, format := range []string{"json", "text"} {
		for _, c := range cases {
			t.Run(format+"/"+c.name, func(t *testing.T) {
				env := baseEnv(srv, "LOG_LEVEL", "debug", "LOG_FORMAT", format, "MAINTENANCE_CONNECT_TIMEOUT", "1s",
					"MAINTENANCE_TERMINATION_LOG", termLog)
				for k, v := range c.env {
					env[k] = v
				}
				if err := os.WriteFile(termLog, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				r := runGate(t, env, c.args...)
				if r.code != c.want {
					t.Errorf("exit %d, want %d:\n%s", r.code, c.want, r.stderr)
				}
				term, _ := os.ReadFile(termLog)
				for _, s := range secrets {
					for where, out := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "the termination log": string(term)} {
						if strings.Contains(out, s) {
							t.Errorf("%s shows the password %q:\n%s", where, s, out)
						}
					}
				}
				if format == "json" {
					for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
						if line != "" && !json.Valid([]byte(line)) {
							t.Errorf("stderr line is not JSON: %q", line)
						}
					}
				}
			})
		}
	}
}

func TestRefusedCredentialsExit2AtOnceSayingAuthenticationFailed(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "admin-pw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "admin-pw"})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "pinger", "on", ">pinger-pw", "~*", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, url, says string }{
		{"a wrong password", "redis://:wrong-pw@" + srv.Addr + "/0", "WRONGPASS"},
		{"an unknown user", "redis://nobody:admin-pw@" + srv.Addr + "/0", "WRONGPASS"},
		{"no password for a server that requires one", "redis://" + srv.Addr + "/0", "NOAUTH"},
		{"an ACL user who may not GET", "redis://pinger:pinger-pw@" + srv.Addr + "/0", "NOPERM"},
	}
	for _, c := range cases {
		for _, args := range [][]string{nil, {"status"}, {"history"}, {"unlock"}} {
			command := "run"
			if len(args) > 0 {
				command = args[0]
			}
			t.Run(c.name+"/"+command, func(t *testing.T) {
				r := runGate(t, baseEnv(srv, "REDIS_URL", c.url, "MAINTENANCE_CONNECT_TIMEOUT", "1m"), args...)
				if r.code != 2 {
					t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
				}
				if r.took > 20*time.Second {
					t.Errorf("took %s: refused credentials must not wait for MAINTENANCE_CONNECT_TIMEOUT (1m)", r.took)
				}
				if !strings.Contains(r.stderr, "authentication failed") || !strings.Contains(r.stderr, c.says) {
					t.Errorf("stderr does not say authentication failed with %s:\n%s", c.says, r.stderr)
				}
			})
		}
	}
}

// taskFile writes a one-task file (name "t") of the given kind line into dir and returns its path.
func taskFile(t *testing.T, dir, name, kind string) string {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte("tasks:\n  - name: t\n    "+kind+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsEnv is the environment of a gate run against a TLS-only server.
func tlsEnv(srv *redistest.Server, extra ...string) map[string]string {
	return baseEnv(srv, append([]string{"REDIS_URL", fmt.Sprintf("rediss://127.0.0.1:%d/0", srv.Port)}, extra...)...)
}

func recordedVersion(t *testing.T, env map[string]string) string {
	t.Helper()
	r := runGate(t, env, "status", "--json")
	var st runner.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v:\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return st.Version
}

func TestGateRunOverTLSWithAPrivateCAAndClientCertificatesRecordsTheVersion(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	for _, clientAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("client certificates required %t", clientAuth), func(t *testing.T) {
			srv := redistest.StartTLS(t, files, clientAuth)
			env := tlsEnv(srv, "REDIS_CA_FILE", files.CA)
			if clientAuth {
				env["REDIS_CERT_FILE"], env["REDIS_KEY_FILE"] = files.ClientCert, files.ClientKey
			}
			if r := runGate(t, env, "--", "true"); r.code != 0 || !strings.Contains(r.stderr, "maintenance done, version recorded") {
				t.Fatalf("gate run over TLS: exit %d:\n%s", r.code, r.stderr)
			}
			if v := recordedVersion(t, env); v != "2.0.0" {
				t.Errorf("recorded version %q, want 2.0.0", v)
			}
			if r := runGate(t, env); r.code != 0 || !strings.Contains(r.stderr, "version already recorded") {
				t.Errorf("second run over TLS did not take the fast path: exit %d:\n%s", r.code, r.stderr)
			}
		})
	}
}

func TestAnUntrustedServerCertificateExits2AtOnceNamingREDIS_CA_FILE(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	srv := redistest.StartTLS(t, files, false)
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"no REDIS_CA_FILE for a private CA", tlsEnv(srv)},
		{"a host name the certificate is not for", tlsEnv(srv, "REDIS_CA_FILE", files.CA, "REDIS_URL", fmt.Sprintf("rediss://localhost:%d/0", srv.Port))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.env["MAINTENANCE_CONNECT_TIMEOUT"] = "1m"
			r := runGate(t, c.env)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2 (a configuration problem, not an unreachable Redis):\n%s", r.code, r.stderr)
			}
			if r.took > 20*time.Second {
				t.Errorf("took %s: an untrusted certificate must not wait for MAINTENANCE_CONNECT_TIMEOUT (1m)", r.took)
			}
			if !strings.Contains(r.stderr, "not trusted") || !strings.Contains(r.stderr, "REDIS_CA_FILE") {
				t.Errorf("stderr does not say the certificate is not trusted and name REDIS_CA_FILE:\n%s", r.stderr)
			}
		})
	}
}

func TestAServerRequiringClientCertificatesRecordsNothingForAGateWithoutOne(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	srv := redistest.StartTLS(t, files, true)
	// The refusal shows as a TLS alert or as a reset connection, depending on timing: either way
	// the gate does not pass (2, or 3 once its connect timeout has run out).
	r := runGate(t, tlsEnv(srv, "REDIS_CA_FILE", files.CA, "MAINTENANCE_CONNECT_TIMEOUT", "2s"), "--", "true")
	if r.code != 2 && r.code != 3 {
		t.Fatalf("exit %d, want 2 or 3:\n%s", r.code, r.stderr)
	}
	withCert := tlsEnv(srv, "REDIS_CA_FILE", files.CA, "REDIS_CERT_FILE", files.ClientCert, "REDIS_KEY_FILE", files.ClientKey)
	if v := recordedVersion(t, withCert); v != "" {
		t.Errorf("recorded version %q, want none", v)
	}
}
