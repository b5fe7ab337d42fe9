package runner

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// truthScript reads the newest history entries from inside a script, so that it runs after a record
// script that is still queued or paused on the server (CLIENT PAUSE holds scripts, not plain reads).
// KEYS = history. ARGV = count. It returns the fencing token and outcome of each entry, newest first.
var truthScript = redis.NewScript(`
local out = {}
for _, e in ipairs(redis.call("xrevrange", KEYS[1], "+", "-", "COUNT", tonumber(ARGV[1]))) do
  local tok, outcome = "", ""
  for i = 1, #e[2], 2 do
    if e[2][i] == "fencing_token" then tok = e[2][i+1] elseif e[2][i] == "outcome" then outcome = e[2][i+1] end
  end
  out[#out+1] = tok .. " " .. outcome
end
return out
`)

// recordedUnder answers, after a record whose outcome is unknown (recErr), whether it wrote a success
// under token: history is the truth. It asks until Redis answers, for at most one lock TTL; when Redis
// never answers, the outcome stays unknown and recErr is returned.
func (r *Runner) recordedUnder(ctx context.Context, log *slog.Logger, token int64, recErr error) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LockTTL)
	defer cancel()
	want := strconv.FormatInt(token, 10) + " " + OutcomeSucceeded
	backoff := 50 * time.Millisecond
	for {
		entries, err := truthScript.Run(ctx, r.wdb, []string{r.keys.History}, 10).StringSlice()
		if err == nil {
			for _, e := range entries {
				if e == want {
					log.Warn("the reply to the record was lost; history shows the version recorded under our fencing token", "err", recErr)
					return true, nil
				}
			}
			log.Warn("the reply to the record was lost; history shows it did not record", "err", recErr)
			return false, fmt.Errorf("%w: the record's reply was lost and history shows nothing recorded under fencing token %d: %v", lock.ErrLost, token, recErr)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w (the outcome is unknown: history could not be read: %v)", recErr, err)
		case <-time.After(jitter(backoff)):
			backoff = min(2*backoff, time.Second)
		}
	}
}
