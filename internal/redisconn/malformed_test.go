package redisconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

const hostileBulk = "$4611686018427387904\r\n" // a bulk string of 2^62 bytes: go-redis panics allocating it

// hostile is a stand-in that answers GET with hostileBulk, and a SUBSCRIBE with its confirmation and
// then a message whose payload is hostileBulk.
func hostile(t *testing.T) string {
	return redistest.StartRESP(t, func(args []string) []string {
		switch args[0] {
		case "HELLO":
			return []string{"-ERR unknown command 'HELLO'\r\n"}
		case "GET":
			return []string{hostileBulk}
		case "SUBSCRIBE":
			return []string{"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n" + hostileBulk}
		}
		return []string{"+OK\r\n"}
	})
}

func TestAReplyGoRedisCannotReadIsAnErrorNotAPanic(t *testing.T) {
	target, err := Parse(Settings{URL: "redis://" + hostile(t) + "/0", Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, wdb := target.NewClient(), target.NewWriteClient()
	defer rdb.Close()
	defer wdb.Close()
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("GET answered with a bulk length of 2^62: err %v, want ErrMalformedReply", err)
	}
	if err := wdb.Get(ctx, "k").Err(); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("GET on the write client: err %v, want ErrMalformedReply", err)
	}
	pipe := rdb.Pipeline()
	pipe.Get(ctx, "k")
	if _, err := pipe.Exec(ctx); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("pipelined GET: err %v, want ErrMalformedReply", err)
	}
	// A message go-redis cannot read, pushed on a subscription: read in a goroutine of go-redis's own
	// (sub.Channel) it would end this test process; Messages recovers and goes silent.
	sub := rdb.Subscribe(ctx, "ch")
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := Messages(sub, nil)
	select {
	case m := <-msgs:
		t.Fatalf("a message %v came through", m)
	case <-time.After(500 * time.Millisecond):
	}
	_ = sub.Close()
}
