package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
	"github.com/peerdb-maintenance/peerdb-maintenance/lock"
)

// Every write a holder makes is fenced: a script that changes nothing unless the lock key still holds
// the holder's value. All keys share the gate's hash tag, so the scripts work on Redis Cluster.

// progressScript: KEYS = lock, progress. ARGV = lock value, reset flag, then field/value pairs.
// With reset = 1 the progress hash is replaced, otherwise fields are added.
var progressScript = redis.NewScript(`
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == "1" then redis.call("del", KEYS[2]) end
for i = 3, #ARGV, 2 do redis.call("hset", KEYS[2], ARGV[i], ARGV[i+1]) end
return 1
`)

// recordScript: KEYS = lock, version, history, progress. ARGV = lock value, version ("" for a failure:
// nothing recorded), events channel, notice, history max length, fencing token, then history
// field/value pairs. On success it sets the version and clears progress; on failure it only drops the
// current task. It returns 0 when the lock is not ours, 1 when it wrote, 2 when the newest history entry
// already carries our fencing token: a record whose reply was lost is not written twice (no other holder
// can have appended since, as every append is fenced by the lock we still hold).
//
// Redis does not undo a script's earlier writes when a later command fails. The history entry is
// written first (it is the command most likely to fail, on a wrongly typed key), the version after
// it, the notice last. On Redis 7 and later
// the script first asks the ACL whether every command it will run is allowed: a user missing one (say
// XADD or PUBLISH) gets a NOPERM error and nothing is written, rather than a version recorded without
// its history entry or notice.
var recordScript = redis.NewScript(`
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
if redis.acl_check_cmd then
  local allowed = redis.acl_check_cmd("set", KEYS[2], "v") and redis.acl_check_cmd("del", KEYS[4])
    and redis.acl_check_cmd("hdel", KEYS[4], "current") and redis.acl_check_cmd("xadd", KEYS[3], "*", "f", "v")
    and redis.acl_check_cmd("publish", ARGV[3], "m") and redis.acl_check_cmd("xrevrange", KEYS[3], "+", "-")
  if not allowed then
    return redis.error_reply("NOPERM this user lacks the permission for every command of the record (SET, DEL, HDEL, XADD, PUBLISH on the gate's keys and channel), so nothing was written")
  end
end
local last = redis.call("xrevrange", KEYS[3], "+", "-", "COUNT", 1)[1]
if last then
  for i = 1, #last[2], 2 do
    if last[2][i] == "fencing_token" and last[2][i+1] == ARGV[6] then return 2 end
  end
end
local fields = {}
for i = 7, #ARGV do fields[#fields+1] = ARGV[i] end
redis.call("xadd", KEYS[3], "MAXLEN", "~", ARGV[5], "*", unpack(fields))
if ARGV[2] ~= "" then
  redis.call("set", KEYS[2], ARGV[2])
  redis.call("del", KEYS[4])
else
  redis.call("hdel", KEYS[4], "current")
end
redis.call("publish", ARGV[3], ARGV[4])
return 1
`)

// historyMaxLen bounds the history stream (approximately, as XADD MAXLEN ~ does).
const historyMaxLen = 1000

// Outcomes written to history.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// Notice is the message published on the events channel when a holder finishes, when it gives the lock
// up, or when unlock --force asks a holder to stop.
type Notice struct {
	// Event is "recorded", "failed", "released" (the lock given up: Reason is "released" or "lost"),
	// "stop", or "stopping" (a holder's answer to stop).
	Event   string `json:"event"`
	Version string `json:"version"`
	Holder  string `json:"holder"`
	Task    string `json:"task,omitempty"`
	Error   string `json:"error,omitempty"`
	// Started is, for "stop", when the holder took the lock: with Holder it names one holder's lock.
	Started time.Time `json:"started,omitzero"`
	// Reason is, for "released", how the lock was given up: "released", or "lost" when the holder found
	// it no longer its own.
	Reason string `json:"reason,omitempty"`
}

// releaseNotice is the notice a holder publishes when it gives its lock up, whatever the way: after a
// record, a failure, a signal, a stop, or when it found the lock lost.
func releaseNotice(h lock.Holder, lost bool) string {
	n := Notice{Event: "released", Version: h.Version, Holder: h.Holder, Reason: "released"}
	if lost {
		n.Reason = "lost"
	}
	b, _ := json.Marshal(n)
	return string(b)
}

// Entry is one history entry: one attempt of one holder.
type Entry struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	Previous     string    `json:"previous"`
	Outcome      string    `json:"outcome"`
	Holder       string    `json:"holder"`
	Pod          string    `json:"pod,omitempty"`
	FencingToken int64     `json:"fencing_token"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Task         string    `json:"task,omitempty"`
	Error        string    `json:"error,omitempty"`
}

func (e Entry) fields() []any {
	return []any{
		"version", e.Version, "previous", e.Previous, "outcome", e.Outcome, "holder", e.Holder, "pod", e.Pod,
		"fencing_token", strconv.FormatInt(e.FencingToken, 10),
		"started", e.Started.UTC().Format(time.RFC3339Nano), "finished", e.Finished.UTC().Format(time.RFC3339Nano),
		"task", e.Task, "error", e.Error,
	}
}

func entryFromStream(m redis.XMessage) Entry {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	e := Entry{ID: m.ID, Version: s("version"), Previous: s("previous"), Outcome: s("outcome"), Holder: s("holder"),
		Pod: s("pod"), Task: s("task"), Error: s("error")}
	e.FencingToken, _ = strconv.ParseInt(s("fencing_token"), 10, 64)
	e.Started, _ = time.Parse(time.RFC3339Nano, s("started"))
	e.Finished, _ = time.Parse(time.RFC3339Nano, s("finished"))
	return e
}

// record writes the outcome of an attempt, fenced and at most once per fencing token. For a success it
// sets the version. It returns false when the lock is no longer ours, in which case nothing was written.
// rdb must not retry on its own (invariant 2).
func record(ctx context.Context, rdb redis.UniversalClient, k keys.Keys, lk *lock.Lock, e Entry) (bool, error) {
	notice := Notice{Event: "recorded", Version: e.Version, Holder: e.Holder}
	version := e.Version
	if e.Outcome != OutcomeSucceeded {
		notice = Notice{Event: "failed", Version: e.Version, Holder: e.Holder, Task: e.Task, Error: e.Error}
		version = ""
	}
	msg, _ := json.Marshal(notice)
	args := append([]any{lk.Value(), version, k.Events, string(msg), historyMaxLen, strconv.FormatInt(e.FencingToken, 10)}, e.fields()...)
	n, err := recordScript.Run(ctx, rdb, []string{k.Lock, k.Version, k.History, k.Progress}, args...).Int()
	if err != nil {
		if e.Outcome != OutcomeSucceeded {
			return false, fmt.Errorf("write the failure of version %s to history: %w", e.Version, err)
		}
		return false, fmt.Errorf("record version %s: %w", e.Version, err)
	}
	return n >= 1, nil
}

// writeProgress adds fields to the progress hash (or replaces it when reset), fenced.
func writeProgress(ctx context.Context, rdb redis.UniversalClient, k keys.Keys, lk *lock.Lock, reset bool, kv ...string) (bool, error) {
	args := []any{lk.Value(), "0"}
	if reset {
		args[1] = "1"
	}
	for _, s := range kv {
		args = append(args, s)
	}
	n, err := progressScript.Run(ctx, rdb, []string{k.Lock, k.Progress}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("write progress: %w", err)
	}
	return n == 1, nil
}
