package lock

import (
	"testing"
	"time"
)

// The keeper gives a lock up early enough that the task's tree can be killed and reaped before it can
// expire, also at the shortest TTL, and never so early that the regular refreshes (every TTL/3) have no
// room left.
func TestLostMarginLeavesTimeToKillTheTreeAtEveryTTL(t *testing.T) {
	for _, c := range []struct{ ttl, want time.Duration }{
		{time.Second, 250 * time.Millisecond},
		{3 * time.Second, 250 * time.Millisecond},
		{6 * time.Second, 500 * time.Millisecond},
		{30 * time.Second, 2500 * time.Millisecond},
		{600 * time.Millisecond, 200 * time.Millisecond}, // below the configured minimum: still at most TTL/3
	} {
		if got := lostMargin(c.ttl); got != c.want {
			t.Errorf("lostMargin(%s) = %s, want %s", c.ttl, got, c.want)
		}
		if giveUp := c.ttl - 2*lostMargin(c.ttl); giveUp < c.ttl/3 {
			t.Errorf("TTL %s: the last refresh attempt starts at %s, before the first regular refresh (%s)", c.ttl, giveUp, c.ttl/3)
		}
	}
}
