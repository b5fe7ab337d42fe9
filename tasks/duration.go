package tasks

import (
	"fmt"
	"regexp"
	"time"
)

// durationSyntax is Go's duration syntax without its range check: what time.ParseDuration refuses
// although it matches this is too large, not malformed.
var durationSyntax = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// maxDuration is the longest duration Go can hold, rounded down to whole hours for messages.
const maxDuration = time.Duration(1<<63-1) / time.Hour * time.Hour

// positiveDuration parses s as a positive Go duration. On failure it returns a problem saying what
// is wrong with s, with examples of the syntax.
func positiveDuration(s, examples string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && durationSyntax.MatchString(s):
		return 0, fmt.Sprintf("%q is too large: at most %s", s, maxDuration)
	case err != nil:
		return 0, fmt.Sprintf("%q is not a duration (Go syntax: %s)", s, examples)
	case d <= 0:
		return 0, fmt.Sprintf("%q is not a positive duration (Go syntax: %s)", s, examples)
	}
	return d, ""
}
