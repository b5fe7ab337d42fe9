package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// AdvisoryLockKey is the key of the transaction-scoped PostgreSQL advisory lock every sql task of a
// gate takes first (DESIGN invariant 1): the first 64 bits of the SHA-256 of the gate's hash tag
// ({prefix:name}), so that two holders of one gate serialize their sql tasks inside the database, and
// different gates do not block each other. pg_locks shows it as classid (high 32 bits) and objid (low).
func AdvisoryLockKey(gateTag string) int64 {
	sum := sha256.Sum256([]byte("peerdb-maintenance:" + gateTag))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// idleTimeout bounds how long the task's transaction may sit idle on the server: a holder stopped
// between two statements (SIGSTOP, a long pause) has its transaction ended by PostgreSQL once its
// lock can have expired, rather than keeping its locks while the next holder runs.
func idleTimeout(lockTTL time.Duration) time.Duration {
	if lockTTL <= 0 {
		lockTTL = 30 * time.Second
	}
	return max(lockTTL, time.Millisecond)
}

// serialize starts the task's transaction: it bounds the time the transaction may sit idle by the lock's
// TTL and takes the gate's advisory lock, waiting for another holder's sql task (bounded by ctx, the
// task's timeout) and saying so when it has to.
func (s *SQL) serialize(ctx context.Context, conn *pgconn.PgConn, env Env) error {
	idle := strconv.FormatInt(idleTimeout(env.LockTTL).Milliseconds(), 10)
	if _, err := conn.Exec(ctx, "SET LOCAL idle_in_transaction_session_timeout = "+idle).ReadAll(); err != nil {
		return s.interrupted(ctx, "set idle_in_transaction_session_timeout", err)
	}
	key := AdvisoryLockKey(env.GateTag)
	arg := [][]byte{[]byte(strconv.FormatInt(key, 10))}
	res := conn.ExecParams(ctx, "SELECT pg_try_advisory_xact_lock($1::bigint)", arg, nil, nil, nil).Read()
	if res.Err != nil {
		return s.interrupted(ctx, "take the gate's advisory lock", res.Err)
	}
	if len(res.Rows) == 1 && len(res.Rows[0]) == 1 && string(res.Rows[0][0]) == "t" {
		return nil
	}
	started := time.Now()
	env.Logger.Info("waiting for another holder's sql transaction to end (the gate's advisory lock is taken)",
		"target", s.Target, "advisory_lock_key", key)
	if err := conn.ExecParams(ctx, "SELECT pg_advisory_xact_lock($1::bigint)", arg, nil, nil, nil).Read().Err; err != nil {
		return s.interrupted(ctx, fmt.Sprintf("wait for the gate's advisory lock %d", key), err)
	}
	env.Logger.Info("advisory lock taken", "target", s.Target, "advisory_lock_key", key,
		"waited_ms", time.Since(started).Milliseconds())
	return nil
}
