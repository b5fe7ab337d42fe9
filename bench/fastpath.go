package main

import (
	"context"
	"fmt"
	"time"
)

// fastPathResult is figure 1 (fast path against the floor) and the memory half of figure 4.
type fastPathResult struct {
	runs     int
	gate     sample // wall ms
	floor    sample // wall ms
	gateRSS  sample // bytes
	floorRSS sample // bytes
	gateCPU  sample // user + system ms
	floorCPU sample // user + system ms
	gateFlt  sample // minor page faults
	floorFlt sample // minor page faults
	commands map[string]int
	peer     *peer
	peerWall sample // wall ms of the peer's no-op run, when it could be installed
	peerCPU  sample
}

// ratio is the target figure: median gate wall time over median floor wall time.
func (r *fastPathResult) ratio() float64 { return r.gate.median() / r.floor.median() }

// pairRatios are the gate/floor ratios of neighbouring runs, less sensitive to drift than the ratio
// of medians.
func (r *fastPathResult) pairRatios() sample {
	var s sample
	for i := range min(len(r.gate), len(r.floor)) {
		s = append(s, r.gate[i]/r.floor[i])
	}
	return s
}

// fastPathVersion is the version recorded before the fast path runs, and the one they run.
const fastPathVersion = "1.0.0"

// benchFastPath runs the floor, the gate and the peer's no-op run in turn against a Redis where the version is already
// recorded, then counts the commands of one more gate run.
func benchFastPath(ctx context.Context, b *binaries, srv *redisServer, runs int, pr *peer) (*fastPathResult, error) {
	const version = fastPathVersion
	if err := srv.reset(ctx); err != nil {
		return nil, err
	}
	if err := srv.client.Set(ctx, gateKeys.Version, version, 0).Err(); err != nil {
		return nil, err
	}
	gateEnv := []string{"PEERDB_DEPLOYMENT_VERSION=" + version, "REDIS_URL=" + srv.url()}
	floorEnv := append([]string{"FLOOR_KEY=" + gateKeys.Version}, gateEnv...)
	one := func(bin string, env []string) (*proc, error) {
		p, err := runProc(ctx, bin, 30*time.Second, env)
		if err != nil {
			return nil, err
		}
		if p.code != 0 {
			return nil, fmt.Errorf("%s exited %d on the fast path:\n%s", bin, p.code, p.stderr)
		}
		return p, nil
	}
	res := &fastPathResult{runs: runs, peer: pr}
	for i := -3; i < runs; i++ { // three rounds to warm the page cache, not counted
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := one(b.floor, floorEnv)
		if err != nil {
			return nil, err
		}
		g, err := one(b.gate, gateEnv)
		if err != nil {
			return nil, err
		}
		var m *proc
		if pr.bin != "" {
			if m, err = runProc(ctx, pr.bin, 30*time.Second, nil, pr.args...); err != nil {
				return nil, err
			}
			if m.code != 0 {
				return nil, fmt.Errorf("%s exited %d on a no-op run:\n%s", pr.bin, m.code, m.stderr)
			}
		}
		if i < 0 {
			continue
		}
		if m != nil {
			res.peerWall = append(res.peerWall, ms(m.wall()))
			res.peerCPU = append(res.peerCPU, ms(m.cpu))
		}
		res.floor = append(res.floor, ms(f.wall()))
		res.gate = append(res.gate, ms(g.wall()))
		res.floorRSS = append(res.floorRSS, float64(f.maxRSS))
		res.gateRSS = append(res.gateRSS, float64(g.maxRSS))
		res.floorCPU = append(res.floorCPU, ms(f.cpu))
		res.gateCPU = append(res.gateCPU, ms(g.cpu))
		res.floorFlt = append(res.floorFlt, float64(f.faults))
		res.gateFlt = append(res.gateFlt, float64(g.faults))
	}
	if err := srv.resetStats(ctx); err != nil {
		return nil, err
	}
	if _, err := one(b.gate, gateEnv); err != nil {
		return nil, err
	}
	var err error
	res.commands, err = srv.commandStats(ctx)
	return res, err
}
