// Command floor is the fast path's lower bound for the bench: a static Go binary that creates a
// go-redis client with the gate's connection options (RESP2, no CLIENT SETINFO), GETs the version key
// and exits. Whatever the gate's fast path costs beyond this is the gate's own overhead.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(2)
	}
	opt.Protocol = 2
	opt.DisableIdentity = true
	rdb := redis.NewClient(opt)
	v, err := rdb.Get(context.Background(), os.Getenv("FLOOR_KEY")).Result()
	if err != nil && err != redis.Nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	_ = rdb.Close()
	if v != os.Getenv("PEERDB_DEPLOYMENT_VERSION") {
		os.Exit(1)
	}
}
