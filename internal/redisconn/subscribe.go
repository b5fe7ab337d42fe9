package redisconn

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// SubscribeWait bounds the wait for a subscription's confirmation. go-redis reads a subscription's
// replies with no deadline but the context's (its read timeout does not apply there), so a connection
// that takes the SUBSCRIBE and never answers (half open, or behind a proxy that lost it) would hold the
// caller for good: a holder deaf to signals while its keeper refreshes the lock, or a waiter that never
// looks at a lock that expired. It is go-redis' read timeout, the longest any other command waits.
const SubscribeWait = 3 * time.Second

// Confirm waits at most SubscribeWait for sub's confirmation. When it times out, go-redis drops the
// connection, and the next Receive (see Messages) subscribes again on a new one.
func Confirm(ctx context.Context, sub *redis.PubSub) error {
	ctx, cancel := context.WithTimeout(ctx, SubscribeWait)
	defer cancel()
	_, err := sub.Receive(ctx)
	return err
}
