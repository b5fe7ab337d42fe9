package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// DefaultGateTag is the hash tag of the default gate's keys, used to check patterns when the loader
// is not told the gate's own tag.
var DefaultGateTag = keys.For("peerdb:maintenance", "default").Tag

// DefaultRedisBatch is how many keys one SCAN asks for, and one UNLINK round trip removes.
const DefaultRedisBatch = 500

// Redis does cache maintenance on the gate's own Redis. Each Unlink pattern is matched with SCAN
// (never KEYS, which blocks the server) and the keys found are removed with UNLINK in batches; on
// Redis Cluster every master is scanned. A pattern that could match one of the gate's own keys is
// refused when the task file is loaded.
type Redis struct {
	Unlink []string
	Batch  int
}

type redisFields struct {
	Unlink []string `yaml:"unlink"`
	Batch  int      `yaml:"batch"`
}

func init() { Register("redis", decodeRedis) }

func decodeRedis(node *yaml.Node, lc LoadContext) (Task, error) {
	var f redisFields
	errs, ok := decodeKind(node, &f)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &Redis{Unlink: f.Unlink, Batch: f.Batch}
	if t.Batch == 0 {
		t.Batch = DefaultRedisBatch
	} else if t.Batch < 1 || t.Batch > 100000 {
		errs = append(errs, Fieldf("batch", "%d is not between 1 and 100000", f.Batch))
	}
	if len(f.Unlink) == 0 {
		errs = append(errs, Fieldf("unlink", "required: a list of key patterns (SCAN MATCH syntax)"))
	}
	tag := lc.GateTag
	if tag == "" {
		tag = DefaultGateTag
	}
	for i, p := range f.Unlink {
		field := fmt.Sprintf("unlink[%d]", i)
		if p == "" {
			errs = append(errs, Fieldf(field, "empty pattern"))
		} else if globCouldMatchPrefix(p, tag) {
			errs = append(errs, Fieldf(field, "pattern %q could match the gate's own keys (%s…): narrow it, for example with a fixed prefix", p, tag))
		}
	}
	return t, errors.Join(errs...)
}

// Run removes the keys matching each pattern and logs how many it removed.
func (r *Redis) Run(ctx context.Context, env Env) error {
	if env.Redis == nil {
		return errors.New("no Redis connection")
	}
	for _, p := range r.Unlink {
		start := time.Now()
		n, err := r.unlink(ctx, env.Redis, p, env.GateTag)
		if err != nil {
			if expired(ctx) {
				return fmt.Errorf("unlink %q stopped after %d keys: %w", p, n, context.Cause(ctx))
			}
			return fmt.Errorf("unlink %q (%d keys removed before the error): %w", p, n, err)
		}
		env.Logger.Info("redis keys unlinked", "pattern", p, "count", n, "duration_ms", time.Since(start).Milliseconds())
	}
	return nil
}

// unlink removes the keys matching pattern: on each master of a cluster, or on the one server.
func (r *Redis) unlink(ctx context.Context, c redis.UniversalClient, pattern, gateTag string) (int64, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return r.unlinkOn(ctx, c, pattern, gateTag)
	}
	var total atomic.Int64
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := r.unlinkOn(ctx, node, pattern, gateTag)
		total.Add(n)
		return err
	})
	return total.Load(), err
}

// unlinkOn scans one server. Each batch is removed with single-key UNLINKs in one pipeline: one
// round trip, and no CROSSSLOT error on a cluster node whose keys span several slots.
func (r *Redis) unlinkOn(ctx context.Context, c redis.Cmdable, pattern, gateTag string) (int64, error) {
	var removed int64
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, int64(r.Batch)).Result()
		if err != nil {
			return removed, fmt.Errorf("scan: %w", err)
		}
		var cmds []*redis.IntCmd
		if len(keys) > 0 {
			_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					// The load-time check makes this impossible; it stays as the last line of defence.
					if gateTag != "" && strings.HasPrefix(k, gateTag) {
						continue
					}
					cmds = append(cmds, p.Unlink(ctx, k))
				}
				return nil
			})
			for _, cmd := range cmds {
				removed += cmd.Val()
			}
			if err != nil {
				return removed, fmt.Errorf("unlink: %w", err)
			}
		}
		if next == 0 {
			return removed, nil
		}
		cursor = next
	}
}

// globCouldMatchPrefix reports whether some key starting with prefix matches the Redis glob pattern
// (the syntax of SCAN MATCH: *, ?, [abc], [^abc], [a-z], and \ to escape). It runs the pattern as a
// nondeterministic automaton over the prefix: if any state survives, the rest of the pattern can
// always be satisfied by some suffix.
func globCouldMatchPrefix(pattern, prefix string) bool {
	toks := globTokens(pattern)
	states := globClosure(toks, map[int]bool{0: true})
	for _, c := range []byte(prefix) {
		next := map[int]bool{}
		for s := range states {
			if s == len(toks) {
				continue // the pattern ended: no longer key can match through this state
			}
			switch t := toks[s]; {
			case t.star:
				next[s] = true
			case t.match(c):
				next[s+1] = true
			}
		}
		states = globClosure(toks, next)
		if len(states) == 0 {
			return false
		}
	}
	return true
}

// globClosure adds the states reached by letting a * match nothing.
func globClosure(toks []globToken, states map[int]bool) map[int]bool {
	for s := range states {
		for i := s; i < len(toks) && toks[i].star; i++ {
			states[i+1] = true
		}
	}
	return states
}

// globToken is one element of a glob pattern: a star, or a test for one byte.
type globToken struct {
	star  bool
	match func(byte) bool
}

func globTokens(p string) []globToken {
	var toks []globToken
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			toks = append(toks, globToken{star: true})
		case '?':
			toks = append(toks, globToken{match: func(byte) bool { return true }})
		case '[':
			end, match := globClass(p, i+1)
			toks = append(toks, globToken{match: match})
			i = end
		case '\\':
			if i+1 < len(p) {
				i++
			}
			lit := p[i]
			toks = append(toks, globToken{match: func(b byte) bool { return b == lit }})
		default:
			toks = append(toks, globToken{match: func(b byte) bool { return b == c }})
		}
	}
	return toks
}

// globClass parses a [...] class starting after the bracket, the way Redis's stringmatchlen does
// (an unclosed class runs to the end of the pattern). It returns the index of the closing bracket.
func globClass(p string, i int) (int, func(byte) bool) {
	not := i < len(p) && p[i] == '^'
	if not {
		i++
	}
	type span struct{ lo, hi byte }
	var spans []span
	for ; i < len(p) && p[i] != ']'; i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			spans = append(spans, span{p[i], p[i]})
		case i+2 < len(p) && p[i+1] == '-':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			spans = append(spans, span{lo, hi})
			i += 2
		default:
			spans = append(spans, span{p[i], p[i]})
		}
	}
	return i, func(b byte) bool {
		in := false
		for _, s := range spans {
			if b >= s.lo && b <= s.hi {
				in = true
				break
			}
		}
		return in != not
	}
}
