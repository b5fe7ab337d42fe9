// Package duration tells apart the two ways a Go duration fails to parse: time.ParseDuration gives
// the same error for "forever" as for "9999999h", which is well formed but longer than Go can hold.
package duration

import (
	"regexp"
	"sync"
	"time"
)

// syntax is Go's duration syntax without its range check.
var syntax = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)
})

// Max is the longest duration Go can hold, rounded down to whole hours for messages.
const Max = time.Duration(1<<63-1) / time.Hour * time.Hour

// TooLarge reports whether s has duration syntax but does not parse: it is out of range.
func TooLarge(s string) bool {
	_, err := time.ParseDuration(s)
	return err != nil && syntax().MatchString(s)
}
