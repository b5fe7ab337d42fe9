// Command floor is the bench's lower bound: a static Go binary with the gate's go-redis connection
// options (RESP2, no CLIENT SETINFO) that does the least a replica could do.
//
// Fast path (the default): GET the version key FLOOR_KEY and exit 0 when it holds
// PEERDB_DEPLOYMENT_VERSION. Whatever the gate's fast path costs beyond this is the gate's own overhead.
//
// Startup storm (FLOOR_STORM_TASK set, seconds): the replica whose SET NX takes FLOOR_KEY:lock runs
// "sleep FLOOR_STORM_TASK" under os/exec, then SETs FLOOR_KEY and PUBLISHes on FLOOR_KEY:done; every
// other replica SUBSCRIBEs, GETs FLOOR_KEY (for a notice published before it subscribed) and exits on
// the notice. No supervisor, lock refresh, fencing, progress or history: what a storm costs on this
// machine before any of the gate's safeguards.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		fail(2, err)
	}
	opt.Protocol = 2
	opt.DisableIdentity = true
	rdb := redis.NewClient(opt)
	key, want := os.Getenv("FLOOR_KEY"), os.Getenv("PEERDB_DEPLOYMENT_VERSION")
	if task := os.Getenv("FLOOR_STORM_TASK"); task != "" {
		if err := storm(context.Background(), rdb, key, want, task); err != nil {
			fail(1, err)
		}
		return
	}
	v, err := rdb.Get(context.Background(), key).Result()
	if err != nil && err != redis.Nil {
		fail(1, err)
	}
	_ = rdb.Close()
	if v != want {
		os.Exit(1)
	}
}

func storm(ctx context.Context, rdb *redis.Client, key, want, task string) error {
	won, err := rdb.SetNX(ctx, key+":lock", os.Getpid(), time.Minute).Result()
	if err != nil {
		return err
	}
	if won {
		if err := exec.Command("sleep", task).Run(); err != nil {
			return err
		}
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, want, 0)
			p.Publish(ctx, key+":done", want)
			return nil
		})
		return err
	}
	sub := rdb.Subscribe(ctx, key+":done")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is in place
		return err
	}
	if v, err := rdb.Get(ctx, key).Result(); err == nil && v == want {
		return nil
	} else if err != nil && err != redis.Nil {
		return err
	}
	for {
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		if m.Payload == want {
			return nil
		}
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(code)
}
