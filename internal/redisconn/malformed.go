package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrMalformedReply is a reply the client could not read: what answered is not Redis speaking its
// protocol (another service at REDIS_URL, a corrupted stream, a hostile server). go-redis panics on some
// such replies (a bulk length of 2^62); the gate's clients turn that panic into this error, which no
// retry can cure.
var ErrMalformedReply = errors.New("redisconn: malformed reply")

// recoverHook turns a panic while a command is sent or its reply read into ErrMalformedReply. go-redis
// reads a command's reply in the goroutine that runs the command, below every hook, so this covers every
// command and pipeline of the gate's clients, whichever goroutine runs them.
type recoverHook struct{}

func (recoverHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (recoverHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = malformed(p)
				cmd.SetErr(err)
			}
		}()
		return next(ctx, cmd)
	}
}

func (recoverHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = malformed(p)
				for _, c := range cmds {
					c.SetErr(err)
				}
			}
		}()
		return next(ctx, cmds)
	}
}

func malformed(p any) error {
	return fmt.Errorf("%w: the server's answer is not the Redis protocol (is REDIS_URL a Redis server?): %v", ErrMalformedReply, p)
}

// withRecover adds recoverHook to a client, and for a cluster to every node client it makes (the
// cluster reloads its slots from a goroutine of its own, through the node clients).
func withRecover(c redis.UniversalClient) redis.UniversalClient {
	c.AddHook(recoverHook{})
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(recoverHook{}) })
	}
	return c
}

// Messages delivers the messages of sub, like sub.Channel, but reads them in a goroutine of the gate's
// that recovers from a reply go-redis cannot read: sub.Channel reads in a goroutine of go-redis's own,
// where such a panic would end the process. After one the channel stays open and silent (the caller
// falls back to polling, whose reads fail with ErrMalformedReply); it is closed when sub is closed.
// The caller must have read sub's first subscription confirmation itself. onResubscribed, when not
// nil, is called each time the subscription is made anew on a new connection, after the one under sub
// failed (a Redis restart or failover): what was published meanwhile is lost and a Redis that restarted
// empty has forgotten every key, so a holder looks at its lock then, and a waiter at the lock it waits
// for. It is not called for a connection that failed without being made again (Redis down: nothing can
// be looked at), nor when sub is closed.
func Messages(sub *redis.PubSub, onResubscribed func()) <-chan *redis.Message {
	ch := make(chan *redis.Message, 100)
	go func() {
		defer func() { _ = recover() }() // a reply go-redis cannot read: no more messages
		for {
			m, err := sub.Receive(context.Background())
			switch {
			case errors.Is(err, redis.ErrClosed):
				close(ch)
				return
			case err != nil:
				time.Sleep(100 * time.Millisecond) // reconnects at the next Receive
			default:
				switch m := m.(type) {
				case *redis.Subscription:
					// Made again on a new connection: the first confirmation was the caller's.
					if onResubscribed != nil {
						onResubscribed()
					}
				case *redis.Message:
					select { // as sub.Channel does, a reader that went away costs a message, not a goroutine
					case ch <- m:
					case <-time.After(time.Minute):
					}
				}
			}
		}
	}()
	return ch
}
