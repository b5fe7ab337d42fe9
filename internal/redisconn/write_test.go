package redisconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

func TestTheWriteClientSendsAWriteWhoseReplyIsLateOnlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr)
	const readTimeout = 200 * time.Millisecond
	target, err := redisconn.Parse(redisconn.Settings{URL: proxy.URL() + "?read_timeout=" + readTimeout.String(), Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	c := target.NewWriteClient()
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	direct := srv.Client()
	writes := func() int { n, _ := direct.Get(ctx, "writes").Int(); return n }

	// The command reaches Redis and runs; its reply is late, so the client cannot know it did.
	proxy.StallReplies()
	done := make(chan error, 1)
	go func() { done <- c.Incr(ctx, "writes").Err() }()
	redistest.Eventually(t, 10*time.Second, func() bool { return writes() == 1 }, "INCR never reached Redis")
	// Let the client's read time out (its reply is held, so nothing else ends the wait), and resume before
	// a retry's own read would: a client that retries writes runs INCR a second time on a new connection.
	// A machine too slow for that only lets the safeguard pass: it cannot fail the test wrongly.
	time.Sleep(readTimeout * 3 / 2)
	proxy.Resume()
	err = <-done
	if n := writes(); n != 1 {
		t.Errorf("INCR ran %d times (the call returned %v): the write client retried a write whose outcome was unknown", n, err)
	}
}
