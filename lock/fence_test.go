package lock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

func TestFencingTokensAreExactAtAnySize(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	cases := []struct {
		name, counter string
		want          int64
	}{
		{"above 2^53, where doubles skip integers", "9007199254740993", 9007199254740994},
		{"one below the int64 limit", "9223372036854775806", 9223372036854775807},
		{"a carry through every digit", "99999999999999999", 100000000000000000},
		{"leading zeros", "0009999999999999999", 10000000000000000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Set(context.Background(), fenceKey, tc.counter, 0).Err(); err != nil {
				t.Fatal(err)
			}
			lk := obtain(t, lock.New(c, key, fenceKey, 10e9), "a")
			defer lk.Release(context.Background())
			got, err := lk.Fence(context.Background())
			if err != nil || got != tc.want {
				t.Fatalf("Fence after %s = %d, %v; want %d", tc.counter, got, err, tc.want)
			}
		})
	}
}

func TestACorruptedFencingCounterIsRefused(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	for _, counter := range []string{"-5", "12abc", "1.5e3", "9223372036854775807", "123456789012345678901234"} {
		if err := c.Set(context.Background(), fenceKey, counter, 0).Err(); err != nil {
			t.Fatal(err)
		}
		lk := obtain(t, lock.New(c, key, fenceKey, 10e9), "a")
		n, err := lk.Fence(context.Background())
		if !errors.Is(err, lock.ErrCorruptFence) {
			t.Errorf("counter %q: token %d, err %v; want ErrCorruptFence", counter, n, err)
		}
		_ = lk.Release(context.Background())
	}
}
