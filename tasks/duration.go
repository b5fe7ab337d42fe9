package tasks

import (
	"fmt"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/duration"
)

// positiveDuration parses s as a positive Go duration. On failure it returns a problem saying what
// is wrong with s, with examples of the syntax.
func positiveDuration(s, examples string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	switch {
	case duration.TooLarge(s):
		return 0, fmt.Sprintf("%q is too large: at most %s", s, duration.Max)
	case err != nil:
		return 0, fmt.Sprintf("%q is not a duration (Go syntax: %s)", s, examples)
	case d <= 0:
		return 0, fmt.Sprintf("%q is not a positive duration (Go syntax: %s)", s, examples)
	}
	return d, ""
}
