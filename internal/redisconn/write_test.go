package redisconn_test

import (
	"context"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redistest"
)

func TestTheWriteClientSendsAWriteWhoseReplyIsLateOnlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr)
	target, err := redisconn.Parse(redisconn.Settings{URL: proxy.URL() + "?read_timeout=100ms", Mode: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	c := target.NewWriteClient()
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The command reaches Redis and runs; its reply is late, so the client cannot know it did.
	proxy.StallReplies()
	if err := c.Incr(ctx, "writes").Err(); err == nil {
		t.Fatal("INCR answered although its reply was held")
	}
	proxy.Resume()
	if n, err := srv.Client().Get(ctx, "writes").Int(); err != nil || n != 1 {
		t.Errorf("INCR ran %d times (%v): the write client retried a write whose outcome was unknown", n, err)
	}
}
