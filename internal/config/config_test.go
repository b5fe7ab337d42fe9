package config_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/config"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// load runs config.Load on env plus a valid PEERDB_DEPLOYMENT_VERSION unless env sets it (an empty
// string in env means unset).
func load(env map[string]string) (*config.Config, error) {
	full := map[string]string{"PEERDB_DEPLOYMENT_VERSION": "v0.30.1"}
	for k, v := range env {
		full[k] = v
	}
	return config.Load(func(k string) string { return full[k] })
}

// problems returns the *config.Error's problems, failing the test when err is anything else.
func problems(t *testing.T, err error) []config.Problem {
	t.Helper()
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error is %T (%v), want *config.Error", err, err)
	}
	return cerr.Problems
}

func vars(ps []config.Problem) []string {
	var vs []string
	for _, p := range ps {
		vs = append(vs, p.Var)
	}
	return vs
}

// tlsFiles generates a CA, certificates and keys once per test, plus a file that is not PEM.
func tlsFiles(t *testing.T) (redistest.TLSFiles, string) {
	t.Helper()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("this is not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return redistest.WriteTLSFiles(t, dir), notPEM
}

func TestGoodValuesAreAccepted(t *testing.T) {
	files, _ := tlsFiles(t)
	tests := []struct {
		name  string
		env   map[string]string
		check func(*config.Config) bool
	}{
		{"a semantic version is the deployment version", map[string]string{"PEERDB_DEPLOYMENT_VERSION": "v0.30.1"},
			func(c *config.Config) bool { return c.Version == "v0.30.1" }},
		{"a git SHA is a deployment version too", map[string]string{"PEERDB_DEPLOYMENT_VERSION": "3f2c9ab"},
			func(c *config.Config) bool { return c.Version == "3f2c9ab" }},
		{"a rediss URL is TLS standalone", map[string]string{"REDIS_URL": "rediss://:pw@redis.internal:6380/2"},
			func(c *config.Config) bool {
				return c.Redis.Mode == "standalone" && c.RedisURL == "rediss://:pw@redis.internal:6380/2"
			}},
		{"a unix socket URL is standalone", map[string]string{"REDIS_URL": "unix:///run/redis.sock?db=1"},
			func(c *config.Config) bool { return c.Redis.Mode == "standalone" }},
		{"a master_name URL in auto mode is sentinel", map[string]string{"REDIS_URL": "redis://sentinel:26379/0?master_name=mymaster"},
			func(c *config.Config) bool { return c.RedisMode == "auto" && c.Redis.Mode == "sentinel" }},
		{"explicit sentinel mode with master_name", map[string]string{"REDIS_MODE": "sentinel", "REDIS_URL": "redis://s1:26379?master_name=m"},
			func(c *config.Config) bool { return c.Redis.Mode == "sentinel" }},
		{"cluster mode with several addr= nodes", map[string]string{"REDIS_MODE": "cluster", "REDIS_URL": "redis://n1:7000?addr=n2:7001&addr=n3:7002"},
			func(c *config.Config) bool { return c.Redis.Mode == "cluster" }},
		{"explicit standalone mode", map[string]string{"REDIS_MODE": "standalone"},
			func(c *config.Config) bool { return c.Redis.Mode == "standalone" }},
		{"a CA file for a rediss URL", map[string]string{"REDIS_URL": "rediss://127.0.0.1:6380", "REDIS_CA_FILE": files.CA},
			func(c *config.Config) bool { return c.RedisCAFile == files.CA }},
		{"a client certificate and key for a rediss URL", map[string]string{"REDIS_URL": "rediss://127.0.0.1:6380", "REDIS_CERT_FILE": files.ClientCert, "REDIS_KEY_FILE": files.ClientKey},
			func(c *config.Config) bool {
				return c.RedisCertFile == files.ClientCert && c.RedisKeyFile == files.ClientKey
			}},
		{"a gate name with dots and dashes", map[string]string{"MAINTENANCE_NAME": "pre-upgrade.v2"},
			func(c *config.Config) bool { return c.Name == "pre-upgrade.v2" }},
		{"a key prefix with colons", map[string]string{"MAINTENANCE_KEY_PREFIX": "acme:peerdb:gate"},
			func(c *config.Config) bool { return c.KeyPrefix == "acme:peerdb:gate" }},
		{"a tasks file path", map[string]string{"MAINTENANCE_TASKS_FILE": "/etc/maintenance/tasks.yaml"},
			func(c *config.Config) bool { return c.TasksFile == "/etc/maintenance/tasks.yaml" }},
		{"lock TTL of one second is the minimum accepted", map[string]string{"MAINTENANCE_LOCK_TTL": "1s"},
			func(c *config.Config) bool { return c.LockTTL == time.Second }},
		{"wait timeout in Go duration syntax", map[string]string{"MAINTENANCE_WAIT_TIMEOUT": "1h30m"},
			func(c *config.Config) bool { return c.WaitTimeout == 90*time.Minute }},
		{"connect timeout in Go duration syntax", map[string]string{"MAINTENANCE_CONNECT_TIMEOUT": "45s"},
			func(c *config.Config) bool { return c.ConnectTimeout == 45*time.Second }},
		{"force for a one-shot run", map[string]string{"MAINTENANCE_FORCE": "true"},
			func(c *config.Config) bool { return c.Force }},
		{"downgrade fail", map[string]string{"MAINTENANCE_DOWNGRADE": "fail"},
			func(c *config.Config) bool { return c.Downgrade == config.DowngradeFail }},
		{"downgrade run", map[string]string{"MAINTENANCE_DOWNGRADE": "run"},
			func(c *config.Config) bool { return c.Downgrade == config.DowngradeRun }},
		{"failure cooldown 0 disables it", map[string]string{"MAINTENANCE_FAILURE_COOLDOWN": "0"},
			func(c *config.Config) bool { return c.FailureCooldown == 0 }},
		{"failure cooldown of five minutes", map[string]string{"MAINTENANCE_FAILURE_COOLDOWN": "5m"},
			func(c *config.Config) bool { return c.FailureCooldown == 5*time.Minute }},
		{"dry run", map[string]string{"MAINTENANCE_DRY_RUN": "true"},
			func(c *config.Config) bool { return c.DryRun }},
		{"holder set explicitly", map[string]string{"MAINTENANCE_HOLDER": "replica-7"},
			func(c *config.Config) bool { return c.Holder == "replica-7" }},
		{"termination log elsewhere", map[string]string{"MAINTENANCE_TERMINATION_LOG": "/tmp/termination"},
			func(c *config.Config) bool { return c.TerminationLog == "/tmp/termination" }},
		{"text logs", map[string]string{"LOG_FORMAT": "text"},
			func(c *config.Config) bool { return c.LogFormat == "text" }},
		{"debug logs", map[string]string{"LOG_LEVEL": "debug"},
			func(c *config.Config) bool { return c.LogLevel == slog.LevelDebug }},
		{"log level in capitals", map[string]string{"LOG_LEVEL": "WARN"},
			func(c *config.Config) bool { return c.LogLevel == slog.LevelWarn }},
		{"pod name from the downward API", map[string]string{"POD_NAME": "flow-worker-0"},
			func(c *config.Config) bool { return c.Pod == "flow-worker-0" }},
		{"inside Kubernetes", map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			func(c *config.Config) bool { return c.InKubernetes }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tt.check(cfg) {
				t.Errorf("configuration does not reflect %v: %+v", tt.env, cfg)
			}
		})
	}
}

func TestBadValuesAreRefusedNamingTheVariable(t *testing.T) {
	files, notPEM := tlsFiles(t)
	tests := []struct {
		name string
		env  map[string]string
		want string // the one variable named
	}{
		{"deployment version unset", map[string]string{"PEERDB_DEPLOYMENT_VERSION": ""}, "PEERDB_DEPLOYMENT_VERSION"},
		{"deployment version with a space", map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1.0 beta"}, "PEERDB_DEPLOYMENT_VERSION"},
		{"deployment version with a control character", map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1.0\x1bbeta"}, "PEERDB_DEPLOYMENT_VERSION"},
		{"deployment version with an invisible format character", map[string]string{"PEERDB_DEPLOYMENT_VERSION": "1.0\u200bbeta"}, "PEERDB_DEPLOYMENT_VERSION"},
		{"deployment version longer than 200 characters", map[string]string{"PEERDB_DEPLOYMENT_VERSION": strings.Repeat("v", 201)}, "PEERDB_DEPLOYMENT_VERSION"},
		{"an http URL is not a Redis URL", map[string]string{"REDIS_URL": "http://redis:6379"}, "REDIS_URL"},
		{"a URL with a port that is not a number", map[string]string{"REDIS_URL": "redis://redis:sixthree/0"}, "REDIS_URL"},
		{"a database that is not a number", map[string]string{"REDIS_URL": "redis://redis:6379/zero"}, "REDIS_URL"},
		{"an unknown URL option", map[string]string{"REDIS_URL": "redis://redis:6379/0?colour=blue"}, "REDIS_URL"},
		{"an unknown Redis mode", map[string]string{"REDIS_MODE": "replica"}, "REDIS_MODE"},
		{"sentinel mode without master_name", map[string]string{"REDIS_MODE": "sentinel", "REDIS_URL": "redis://s1:26379"}, "REDIS_URL"},
		{"a CA file that does not exist", map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_CA_FILE"},
		{"a CA file that is not PEM", map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_CA_FILE": notPEM}, "REDIS_CA_FILE"},
		{"a CA file with a plain redis URL", map[string]string{"REDIS_URL": "redis://redis:6379", "REDIS_CA_FILE": files.CA}, "REDIS_CA_FILE"},
		{"a client certificate without its key", map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_CERT_FILE": files.ClientCert}, "REDIS_KEY_FILE"},
		{"a client key without its certificate", map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_KEY_FILE": files.ClientKey}, "REDIS_CERT_FILE"},
		{"a client key alone with a plain redis URL", map[string]string{"REDIS_URL": "redis://redis:6379", "REDIS_KEY_FILE": files.ClientKey}, "REDIS_KEY_FILE"},
		{"a client certificate that does not match its key", map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_CERT_FILE": files.ClientCert, "REDIS_KEY_FILE": files.ServerKey}, "REDIS_CERT_FILE"},
		{"a gate name with a space", map[string]string{"MAINTENANCE_NAME": "pre upgrade"}, "MAINTENANCE_NAME"},
		{"a gate name with braces", map[string]string{"MAINTENANCE_NAME": "{x}"}, "MAINTENANCE_NAME"},
		{"a key prefix with braces breaks the hash tag", map[string]string{"MAINTENANCE_KEY_PREFIX": "a{b}"}, "MAINTENANCE_KEY_PREFIX"},
		{"a key prefix with a closing brace alone", map[string]string{"MAINTENANCE_KEY_PREFIX": "ab}"}, "MAINTENANCE_KEY_PREFIX"},
		{"a key prefix with a tab", map[string]string{"MAINTENANCE_KEY_PREFIX": "a\tb"}, "MAINTENANCE_KEY_PREFIX"},
		{"lock TTL below one second is refused", map[string]string{"MAINTENANCE_LOCK_TTL": "500ms"}, "MAINTENANCE_LOCK_TTL"},
		{"lock TTL of zero is refused", map[string]string{"MAINTENANCE_LOCK_TTL": "0s"}, "MAINTENANCE_LOCK_TTL"},
		{"lock TTL without a unit", map[string]string{"MAINTENANCE_LOCK_TTL": "30"}, "MAINTENANCE_LOCK_TTL"},
		{"wait timeout of zero", map[string]string{"MAINTENANCE_WAIT_TIMEOUT": "0s"}, "MAINTENANCE_WAIT_TIMEOUT"},
		{"wait timeout that is not a duration", map[string]string{"MAINTENANCE_WAIT_TIMEOUT": "forever"}, "MAINTENANCE_WAIT_TIMEOUT"},
		{"negative connect timeout", map[string]string{"MAINTENANCE_CONNECT_TIMEOUT": "-1m"}, "MAINTENANCE_CONNECT_TIMEOUT"},
		{"connect timeout that is not a duration", map[string]string{"MAINTENANCE_CONNECT_TIMEOUT": "2 minutes"}, "MAINTENANCE_CONNECT_TIMEOUT"},
		{"force that is not a boolean", map[string]string{"MAINTENANCE_FORCE": "yes please"}, "MAINTENANCE_FORCE"},
		{"an unknown downgrade policy", map[string]string{"MAINTENANCE_DOWNGRADE": "ignore"}, "MAINTENANCE_DOWNGRADE"},
		{"negative failure cooldown", map[string]string{"MAINTENANCE_FAILURE_COOLDOWN": "-30s"}, "MAINTENANCE_FAILURE_COOLDOWN"},
		{"failure cooldown that is not a duration", map[string]string{"MAINTENANCE_FAILURE_COOLDOWN": "soon"}, "MAINTENANCE_FAILURE_COOLDOWN"},
		{"dry run that is not a boolean", map[string]string{"MAINTENANCE_DRY_RUN": "maybe"}, "MAINTENANCE_DRY_RUN"},
		{"an unknown log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"an unknown log level", map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{"a log level between the named ones", map[string]string{"LOG_LEVEL": "info+2"}, "LOG_LEVEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			if err == nil {
				t.Fatalf("Load accepted %v: %+v", tt.env, cfg)
			}
			ps := problems(t, err)
			if got := vars(ps); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("problems name %v, want exactly [%s]: %v", got, tt.want, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("message %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestEveryBadVariableIsReportedAtOnce(t *testing.T) {
	_, err := load(map[string]string{
		"PEERDB_DEPLOYMENT_VERSION":    "",
		"MAINTENANCE_LOCK_TTL":         "100ms",
		"MAINTENANCE_WAIT_TIMEOUT":     "forever",
		"MAINTENANCE_DOWNGRADE":        "ignore",
		"LOG_FORMAT":                   "xml",
		"REDIS_MODE":                   "replica",
		"MAINTENANCE_FAILURE_COOLDOWN": "-1s",
	})
	got := vars(problems(t, err))
	for _, want := range []string{"PEERDB_DEPLOYMENT_VERSION", "MAINTENANCE_LOCK_TTL", "MAINTENANCE_WAIT_TIMEOUT",
		"MAINTENANCE_DOWNGRADE", "LOG_FORMAT", "REDIS_MODE", "MAINTENANCE_FAILURE_COOLDOWN"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not reported; problems name %v", want, got)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message does not name %s: %v", want, err)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d problems, want 7 (one per bad variable): %v", len(got), err)
	}
}

func TestDefaultsWhenUnset(t *testing.T) {
	cfg, err := load(nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"REDIS_URL", cfg.RedisURL, "redis://localhost:6379/0"},
		{"REDIS_MODE", cfg.RedisMode, "auto"},
		{"resolved mode", cfg.Redis.Mode, "standalone"},
		{"MAINTENANCE_NAME", cfg.Name, "default"},
		{"MAINTENANCE_KEY_PREFIX", cfg.KeyPrefix, "peerdb:maintenance"},
		{"MAINTENANCE_TASKS_FILE", cfg.TasksFile, ""},
		{"MAINTENANCE_LOCK_TTL", cfg.LockTTL, 30 * time.Second},
		{"MAINTENANCE_WAIT_TIMEOUT", cfg.WaitTimeout, 15 * time.Minute},
		{"MAINTENANCE_CONNECT_TIMEOUT", cfg.ConnectTimeout, 2 * time.Minute},
		{"MAINTENANCE_FORCE", cfg.Force, false},
		{"MAINTENANCE_DOWNGRADE", cfg.Downgrade, config.DowngradeSkip},
		{"MAINTENANCE_FAILURE_COOLDOWN", cfg.FailureCooldown, 30 * time.Second},
		{"MAINTENANCE_DRY_RUN", cfg.DryRun, false},
		{"MAINTENANCE_TERMINATION_LOG", cfg.TerminationLog, "/dev/termination-log"},
		{"LOG_FORMAT", cfg.LogFormat, "json"},
		{"LOG_LEVEL", cfg.LogLevel, slog.LevelInfo},
		{"POD_NAME", cfg.Pod, ""},
		{"in Kubernetes", cfg.InKubernetes, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s defaults to %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestHolderDefaultsToTheHostname(t *testing.T) {
	// Without a hostname the holder is "unknown": the default is checked either way, never skipped.
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	cfg, err := load(nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Holder != host {
		t.Errorf("holder is %q, want the hostname %q", cfg.Holder, host)
	}
}

func TestRedisPasswordNeverAppearsInErrors(t *testing.T) {
	const secret = "s3cretpw"
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"invalid port in a URL with a password", map[string]string{"REDIS_URL": "redis://app:" + secret + "@redis:port/0"}},
		{"bad query parameter in a URL with a password", map[string]string{"REDIS_URL": "redis://app:" + secret + "@redis:6379/0?pool_size=many"}},
		{"bad database in a URL with a password", map[string]string{"REDIS_URL": "redis://:" + secret + "@redis:6379/x"}},
		{"password given as a query parameter a standalone URL does not take", map[string]string{"REDIS_URL": "redis://redis:6379/0?password=" + secret}},
		{"sentinel password next to a bad option", map[string]string{"REDIS_URL": "redis://:" + secret + "@s1:26379/0?master_name=m&sentinel_password=" + secret + "&route_randomly=perhaps"}},
		{"cluster URL with a password and a bad option", map[string]string{"REDIS_MODE": "cluster", "REDIS_URL": "redis://:" + secret + "@n1:7000?addr=n2:7001&max_redirects=lots"}},
		{"password with an unencoded slash", map[string]string{"REDIS_URL": "redis://app:s3cr/etpw@redis:6379/0"}},
		{"password with an unencoded hash", map[string]string{"REDIS_URL": "redis://app:s3cr#etpw@redis:6379/0"}},
		{"password with an invalid percent escape", map[string]string{"REDIS_URL": "redis://app:s3cr%zzetpw@redis:6379/0"}},
		{"numeric password with an unencoded slash", map[string]string{"REDIS_URL": "redis://:1234/5678@redis:6379/0"}},
		{"numeric password with an unencoded hash", map[string]string{"REDIS_URL": "redis://:1234#5678@redis:6379/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.env)
			if err == nil {
				t.Fatal("Load accepted the URL")
			}
			if got := vars(problems(t, err)); !slices.Contains(got, "REDIS_URL") {
				t.Errorf("problems name %v, want REDIS_URL", got)
			}
			msg := err.Error()
			for _, part := range []string{secret, "s3cr", "etpw", "1234", "5678"} {
				if strings.Contains(msg, part) {
					t.Errorf("message shows the password (%q): %s", part, msg)
				}
			}
		})
	}
}

func TestADurationTooLargeForGoSaysSo(t *testing.T) {
	_, err := load(map[string]string{"MAINTENANCE_WAIT_TIMEOUT": "9999999h"})
	if err == nil || !strings.Contains(err.Error(), `MAINTENANCE_WAIT_TIMEOUT: "9999999h" is too large for a duration: at most 2562047h0m0s`) {
		t.Errorf("err = %v, want it to say the duration is too large", err)
	}
}
