package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// A REDIS_URL whose scheme does not match what the server speaks is a configuration problem: exit 2
// within seconds, saying which side speaks TLS, not a retry for MAINTENANCE_CONNECT_TIMEOUT ending in
// "unreachable".
func TestATLSMismatchExits2AtOnceSayingWhichSideSpeaksTLS(t *testing.T) {
	files := redistest.WriteTLSFiles(t, t.TempDir())
	tlsSrv := redistest.StartTLS(t, files, false)
	tlsAuthSrv := redistest.StartTLS(t, files, true)
	plain := redistest.Start(t)
	const connectTimeout = 2 * time.Minute
	cases := []struct {
		name string
		env  map[string]string
		hint string
	}{
		{"redis:// to a TLS-only server", baseEnv(tlsSrv, "REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/0", tlsSrv.Port)), "speaks only TLS: use rediss://"},
		{"redis:// to a TLS server requiring client certificates", baseEnv(tlsAuthSrv, "REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/0", tlsAuthSrv.Port)), "speaks only TLS: use rediss://"},
		{"rediss:// to a plain server", baseEnv(plain, "REDIS_URL", "rediss://"+plain.Addr+"/0", "REDIS_CA_FILE", files.CA), "answers plain Redis, not TLS: use redis://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.env["MAINTENANCE_CONNECT_TIMEOUT"] = connectTimeout.String()
			for _, args := range [][]string{nil, {"status"}} {
				r := runGate(t, c.env, args...)
				if r.code != 2 {
					t.Fatalf("%v: exit %d, want 2:\n%s", args, r.code, r.stderr)
				}
				if !strings.Contains(r.stderr, c.hint) {
					t.Errorf("%v: stderr does not say %q:\n%s", args, c.hint, r.stderr)
				}
				// Bounded by the configuration, not by speed: well before the connect timeout.
				if r.took >= connectTimeout/2 {
					t.Errorf("%v: took %s, retried toward MAINTENANCE_CONNECT_TIMEOUT=%s", args, r.took, connectTimeout)
				}
			}
		})
	}
	t.Run("a plain server that is down is still waited for", func(t *testing.T) {
		env := baseEnv(plain, "REDIS_URL", "redis://127.0.0.1:1/0", "MAINTENANCE_CONNECT_TIMEOUT", "2s")
		if r := runGate(t, env); r.code != 3 || strings.Contains(r.stderr, "TLS") {
			t.Errorf("exit %d, want 3 with no word of TLS:\n%s", r.code, r.stderr)
		}
	})
}
