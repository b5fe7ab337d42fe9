package e2e

import (
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// hostileReply is a bulk string of 2^62 bytes: go-redis panics allocating it.
const hostileReply = "$4611686018427387904\r\n"

// hostileRedis speaks just enough RESP to get the gate to the command named hostileTo, and answers that
// one with hostileReply: GET gets nil and scripts get the hostile answer when hostileTo is EVALSHA.
func hostileRedis(t *testing.T, hostileTo string) string {
	return redistest.StartRESP(t, func(args []string) []string {
		switch name := args[0]; {
		case name == hostileTo || (hostileTo == "EVALSHA" && name == "EVAL"):
			return []string{hostileReply}
		case name == "HELLO":
			return []string{"-ERR unknown command 'HELLO'\r\n"}
		case name == "GET":
			return []string{"$-1\r\n"}
		case name == "XREVRANGE":
			return []string{"*0\r\n"}
		}
		return []string{"+OK\r\n"}
	})
}

// A server answering with a reply go-redis cannot read (a bulk length of 2^62, which panics inside
// go-redis) ends the run with the documented one-line error and exit 2, never a stack trace: at the
// first read, and in a script once the gate is past it.
func TestAHostileReplyIsOneLineAndExit2NeverAPanic(t *testing.T) {
	for _, to := range []string{"GET", "EVALSHA"} {
		t.Run("answering "+to, func(t *testing.T) {
			addr := hostileRedis(t, to)
			for _, args := range [][]string{nil, {"status"}} {
				if to == "EVALSHA" && args != nil {
					continue // status runs no script
				}
				r := runGate(t, map[string]string{"PEERDB_DEPLOYMENT_VERSION": "2.0.0", "REDIS_URL": "redis://" + addr + "/0",
					"MAINTENANCE_CONNECT_TIMEOUT": "30s"}, args...)
				if r.code != 2 {
					t.Errorf("%v: exit %d, want 2:\n%s", args, r.code, r.stderr)
				}
				out := r.stdout + r.stderr
				if strings.Contains(out, "goroutine") || strings.Contains(out, "panic:") {
					t.Errorf("%v: a stack trace reached the user:\n%s", args, out)
				}
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				last := lines[len(lines)-1]
				if !strings.Contains(last, "not the Redis protocol") || !strings.Contains(last, `"exit_code":2`) {
					t.Errorf("%v: the last line does not say the reply is not the Redis protocol with exit 2:\n%s", args, r.stderr)
				}
				if r.took.Seconds() >= 30 {
					t.Errorf("%v: took %s: a malformed reply was retried until MAINTENANCE_CONNECT_TIMEOUT", args, r.took)
				}
			}
		})
	}
}
