package redisconn

import (
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
)

// serverError is a reply error as go-redis returns it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

func TestClassifyNamesPermanentRedisErrors(t *testing.T) {
	cases := []struct {
		err  error
		want Refusal
	}{
		{serverError("READONLY You can't write against a read only replica."), Unwritable},
		{serverError("OOM command not allowed when used memory > 'maxmemory'."), Unwritable},
		{serverError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), Unwritable},
		{serverError("NOREPLICAS Not enough good replicas to write."), Unwritable},
		{serverError("WRONGTYPE Operation against a key holding the wrong kind of value"), Refused},
		{serverError("MOVED 3999 127.0.0.1:7001"), Refused},
		{serverError("ASK 3999 127.0.0.1:7001"), Refused},
		{serverError("ERR This instance has cluster support disabled"), Refused},
		{serverError("ERR unknown command 'evalsha', with args beginning with: "), Refused},
		{serverError("NOPERM this user has no permissions to run the 'set' command"), Refused},
		{fmt.Errorf("lock: obtain: %w", serverError("READONLY You can't write")), Unwritable},
		{serverError("LOADING Redis is loading the dataset in memory"), Transient},
		{errors.New("READONLY in a message that is not a server reply"), Transient},
		{errors.New("i/o timeout"), Transient},
		{nil, Transient},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// The client of the holder's writes never retries a command on its own, in every mode: a retried write
// whose first try ran would be a second write.
func TestWriteClientNeverRetries(t *testing.T) {
	for _, tc := range []struct{ url, mode string }{
		{"redis://redis:6379/0", "auto"},
		{"redis://s1:26379?master_name=m", "auto"},
		{"redis://n1:7000?addr=n2:7001", "cluster"},
	} {
		target, err := Parse(Settings{URL: tc.url, Mode: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		c := target.NewWriteClient()
		var retries int
		switch c := c.(type) {
		case *redis.Client:
			retries = c.Options().MaxRetries
		case *redis.ClusterClient:
			retries = c.Options().MaxRetries
		}
		_ = c.Close()
		// go-redis turns -1 into 0 retries.
		if retries > 0 {
			t.Errorf("%s (%s): the write client retries %d times", tc.url, tc.mode, retries)
		}
	}
}
