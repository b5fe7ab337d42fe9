package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

func TestRedactHidesEveryPassword(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		secret []string // must not appear
		keep   []string // must still appear
	}{
		{"user and password", "redis://app:hunter2@redis:6379/0", []string{"hunter2"}, []string{"app", "redis:6379"}},
		{"password only, TLS", "rediss://:hunter2@redis:6380/1", []string{"hunter2"}, []string{"rediss://", "redis:6380"}},
		{"password query parameter", "redis://s1:26379/0?master_name=mymaster&password=hunter2", []string{"hunter2"}, []string{"master_name=mymaster"}},
		{"sentinel password query parameter", "redis://:hunter2@s1:26379/0?master_name=m&sentinel_password=tiger7", []string{"hunter2", "tiger7"}, []string{"s1:26379"}},
		{"unix socket with a password", "unix://app:hunter2@/run/redis.sock?db=2", []string{"hunter2"}, []string{"/run/redis.sock"}},
		{"unix socket without a password is unchanged", "unix:///run/redis.sock", nil, []string{"unix:///run/redis.sock"}},
		{"URL without a password is unchanged", "redis://redis:6379/0", nil, []string{"redis://redis:6379/0"}},
		{"unparseable URL", "redis://app:hun%zzter2@redis", []string{"hun", "ter2"}, nil},
		{"password with an unencoded hash", "redis://:1234#5678@redis:6379", []string{"1234", "5678"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redisconn.Redact(tt.url)
			for _, s := range tt.secret {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q) = %q shows %q", tt.url, got, s)
				}
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("Redact(%q) = %q lost %q", tt.url, got, k)
				}
			}
		})
	}
}

func TestParseResolvesTheMode(t *testing.T) {
	tests := []struct {
		name, url, mode, want string
	}{
		{"auto with master_name is sentinel", "redis://s1:26379/0?master_name=mymaster", "auto", "sentinel"},
		{"auto without master_name is standalone", "redis://redis:6379/0", "auto", "standalone"},
		{"empty mode behaves as auto", "redis://s1:26379?master_name=m", "", "sentinel"},
		{"auto with a unix socket is standalone", "unix:///run/redis.sock", "auto", "standalone"},
		{"explicit sentinel", "redis://s1:26379?master_name=m", "sentinel", "sentinel"},
		{"explicit standalone", "rediss://redis:6380", "standalone", "standalone"},
		{"cluster with several addr= nodes", "redis://n1:7000?addr=n2:7001&addr=n3:7002", "cluster", "cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, err := redisconn.Parse(redisconn.Settings{URL: tt.url, Mode: tt.mode})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if target.Mode != tt.want {
				t.Errorf("mode %q, want %q", target.Mode, tt.want)
			}
		})
	}
}

func TestParseBuildsTheClientOfItsMode(t *testing.T) {
	parse := func(url, mode string) redis.UniversalClient {
		t.Helper()
		target, err := redisconn.Parse(redisconn.Settings{URL: url, Mode: mode})
		if err != nil {
			t.Fatalf("Parse(%s): %v", url, err)
		}
		c := target.NewClient()
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	cc, ok := parse("redis://:pw@n1:7000?addr=n2:7001&addr=n3:7002", "cluster").(*redis.ClusterClient)
	if !ok {
		t.Fatal("cluster mode does not make a cluster client")
	}
	if got := strings.Join(cc.Options().Addrs, ","); got != "n1:7000,n2:7001,n3:7002" {
		t.Errorf("cluster nodes %s, want every addr= node", got)
	}
	if _, ok := parse("redis://s1:26379?master_name=m", "auto").(*redis.Client); !ok {
		t.Error("sentinel mode does not make a failover client")
	}
	if c, ok := parse("redis://:pw@redis:6379/3", "auto").(*redis.Client); !ok || c.Options().DB != 3 || c.Options().Password != "pw" {
		t.Error("standalone mode does not make a client for the URL's database with its password")
	}
}

func TestParseRefusesUnusableSettings(t *testing.T) {
	tests := []struct {
		name    string
		s       redisconn.Settings
		wantVar string
	}{
		{"an unknown mode", redisconn.Settings{URL: "redis://redis:6379", Mode: "replica"}, "REDIS_MODE"},
		{"sentinel mode without master_name", redisconn.Settings{URL: "redis://s1:26379", Mode: "sentinel"}, "REDIS_URL"},
		{"sentinel mode over a unix socket", redisconn.Settings{URL: "unix:///run/redis.sock?master_name=m", Mode: "sentinel"}, "REDIS_URL"},
		{"an http URL", redisconn.Settings{URL: "http://redis:6379", Mode: "auto"}, "REDIS_URL"},
		{"a CA file with a plain redis URL", redisconn.Settings{URL: "redis://redis:6379", Mode: "auto", CAFile: "/etc/ca.pem"}, "REDIS_CA_FILE"},
		{"a client certificate with a plain redis URL", redisconn.Settings{URL: "redis://redis:6379", Mode: "auto", CertFile: "/c.pem", KeyFile: "/k.pem"}, "REDIS_CERT_FILE"},
		{"a CA file that does not exist", redisconn.Settings{URL: "rediss://redis:6380", Mode: "auto", CAFile: "/nonexistent/ca.pem"}, "REDIS_CA_FILE"},
		{"a skip_verify that is not a boolean", redisconn.Settings{URL: "rediss://redis:6380/0?skip_verify=maybe", Mode: "auto"}, "REDIS_URL"},
		{"a port above 65535", redisconn.Settings{URL: "redis://:pw@redis:99999/0", Mode: "auto"}, "REDIS_URL"},
		{"port 0", redisconn.Settings{URL: "rediss://redis:0", Mode: "auto"}, "REDIS_URL"},
		{"a sentinel addr= with a port above 65535", redisconn.Settings{URL: "redis://s1:26379?master_name=m&addr=s2:70000", Mode: "auto"}, "REDIS_URL"},
		{"a cluster node with a port above 65535", redisconn.Settings{URL: "redis://n1:7000?addr=n2:123456", Mode: "cluster"}, "REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.Parse(tt.s)
			var se *redisconn.SettingError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SettingError", err)
			}
			if se.Var != tt.wantVar || !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error names %s (%v), want %s", se.Var, err, tt.wantVar)
			}
		})
	}
}

func TestTargetPrintsWithoutItsPassword(t *testing.T) {
	target, err := redisconn.Parse(redisconn.Settings{URL: "redis://app:hunter2@redis:6379/0", Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if s := target.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "redis:6379") {
		t.Errorf("String() = %q", s)
	}
}

// ping connects to url with the given TLS files and returns PING's error.
func ping(t *testing.T, s redisconn.Settings) error {
	t.Helper()
	if s.Mode == "" {
		s.Mode = "auto"
	}
	target, err := redisconn.Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c := target.NewClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func TestIsAuthErrorAgainstARealServer(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "s3cret"})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "limited", "on", ">pw", "~*", "+get").Err(); err != nil {
		t.Fatalf("create ACL user: %v", err)
	}

	t.Run("wrong password is an auth error", func(t *testing.T) {
		err := ping(t, redisconn.Settings{URL: fmt.Sprintf("redis://:wrong@%s/0", srv.Addr)})
		if !redisconn.IsAuthError(err) {
			t.Errorf("IsAuthError(%v) = false", err)
		}
	})
	t.Run("no password is an auth error", func(t *testing.T) {
		err := ping(t, redisconn.Settings{URL: srv.URL()})
		if !redisconn.IsAuthError(err) {
			t.Errorf("IsAuthError(%v) = false", err)
		}
	})
	t.Run("a user without permission for a command is an auth error", func(t *testing.T) {
		target, err := redisconn.Parse(redisconn.Settings{URL: fmt.Sprintf("redis://limited:pw@%s/0", srv.Addr), Mode: "auto"})
		if err != nil {
			t.Fatal(err)
		}
		c := target.NewClient()
		defer c.Close()
		if err := c.Get(ctx, "k").Err(); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("GET as the limited user: %v", err)
		}
		err = c.Eval(ctx, "return 1", nil).Err()
		if err == nil {
			t.Fatal("EVAL allowed for a user with +get only")
		}
		if !redisconn.IsAuthError(err) {
			t.Errorf("IsAuthError(%v) = false", err)
		}
	})
	t.Run("the right password is no error at all", func(t *testing.T) {
		if err := ping(t, redisconn.Settings{URL: fmt.Sprintf("redis://:s3cret@%s/0", srv.Addr)}); err != nil {
			t.Errorf("PING with the right password: %v", err)
		}
	})
	t.Run("a command error is not an auth error", func(t *testing.T) {
		err := admin.Do(ctx, "NO-SUCH-COMMAND").Err()
		if err == nil || redisconn.IsAuthError(err) {
			t.Errorf("IsAuthError(%v) = true", err)
		}
	})
}

func TestConnectionRefusedIsNotAnAuthError(t *testing.T) {
	err := ping(t, redisconn.Settings{URL: fmt.Sprintf("redis://:s3cret@127.0.0.1:%d/0", redistest.FreePort(t))})
	if err == nil {
		t.Fatal("PING succeeded on a port nobody listens on")
	}
	if redisconn.IsAuthError(err) {
		t.Errorf("IsAuthError(%v) = true", err)
	}
	if redisconn.IsAuthError(nil) {
		t.Error("IsAuthError(nil) = true")
	}
}

func TestTLSWithAPrivateCA(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	srv := redistest.StartTLS(t, files, false)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", srv.Port)

	if err := ping(t, redisconn.Settings{URL: url, CAFile: files.CA}); err != nil {
		t.Errorf("PING over TLS with the CA file: %v", err)
	}
	err := ping(t, redisconn.Settings{URL: url})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("PING over TLS without the CA file: %v, want a certificate verification error", err)
	}
	if !redisconn.IsCertificateError(err) || redisconn.IsAuthError(err) {
		t.Errorf("IsCertificateError(%v) = false (or it passes for an auth error)", err)
	}
	// A server certificate for another name, from the trusted CA.
	other := fmt.Sprintf("rediss://localhost:%d/0", srv.Port)
	if err := ping(t, redisconn.Settings{URL: other, CAFile: files.CA}); !redisconn.IsCertificateError(err) {
		t.Errorf("PING %s with a certificate for 127.0.0.1: IsCertificateError(%v) = false", other, err)
	}
}

func TestOnlyCertificateRefusalsAreCertificateErrors(t *testing.T) {
	refused := ping(t, redisconn.Settings{URL: fmt.Sprintf("rediss://127.0.0.1:%d/0", redistest.FreePort(t))})
	for _, err := range []error{nil, refused, errors.New("NOPERM this user has no permissions to run the 'get' command")} {
		if redisconn.IsCertificateError(err) {
			t.Errorf("IsCertificateError(%v) = true", err)
		}
	}
}

func TestACLRefusalsInsideScriptsAreAuthErrors(t *testing.T) {
	for _, msg := range []string{
		"ERR The user executing the script can't run this command or subcommand script: 1e24, on @user_script:11.", // Redis 7.0
		"ERR The user executing the script can't access at least one of the keys mentioned in the command arguments script: 1e24",
		"ERR ACL failure in script: User gate has no permissions to run the 'xadd' command script: 1e24, on @user_script:11.", // 7.2
	} {
		if !redisconn.IsAuthError(errors.New(msg)) {
			t.Errorf("IsAuthError(%q) = false", msg)
		}
	}
	if redisconn.IsAuthError(errors.New("ERR user_script:1: Script attempted to access nonexistent global variable")) {
		t.Error("a script's own error is taken for an ACL refusal")
	}
}

func TestTLSWithClientCertificates(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	srv := redistest.StartTLS(t, files, true)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", srv.Port)

	withCert := redisconn.Settings{URL: url, CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}
	if err := ping(t, withCert); err != nil {
		t.Errorf("PING with a client certificate: %v", err)
	}
	// With TLS 1.3 the refusal shows either as "certificate required" or as a reset connection,
	// depending on when the server's alert arrives.
	if err := ping(t, redisconn.Settings{URL: url, CAFile: files.CA}); err == nil {
		t.Error("PING without a client certificate succeeded on a server that requires one")
	}
}

func TestAPipelineUsesTheCommandConnection(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client()
	target, err := redisconn.Parse(redisconn.Settings{URL: srv.URL(), Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	c := target.NewClient()
	defer c.Close()
	// A waiter's reads: one command, then one pipeline (the lock holder and its TTL).
	if err := c.Get(ctx, "k").Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "k")
		p.PTTL(ctx, "k")
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	info, err := admin.Info(ctx, "clients").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "connected_clients:2\r\n") {
		t.Errorf("want 2 connections (this test's and the gate client's one), INFO clients says:\n%s", info)
	}
}

// The errors as a real server returns them through go-redis: a cluster node's redirection (raised by a
// script here, since a standalone server never redirects) and a master short of replicas.
func TestClassifyRealServerReplies(t *testing.T) {
	srv := redistest.Start(t, "--min-replicas-to-write", "1")
	c := srv.Client()
	ctx := context.Background()
	for _, reply := range []string{"MOVED 3999 127.0.0.1:7001", "ASK 3999 127.0.0.1:7001"} {
		err := c.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, reply).Err()
		if redisconn.Classify(err) != redisconn.Refused || !redisconn.IsRedirect(err) {
			t.Errorf("Classify(%v) = %d, want Refused, a redirect", err, redisconn.Classify(err))
		}
	}
	err := c.Set(ctx, "k", "v", 0).Err()
	if redisconn.Classify(err) != redisconn.Unwritable || !strings.Contains(fmt.Sprint(err), "NOREPLICAS") {
		t.Errorf("Classify(%v) = %d, want Unwritable (NOREPLICAS)", err, redisconn.Classify(err))
	}
}
