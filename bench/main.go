// Command bench measures peerdb-maintenance as it is built for production and writes BENCHMARKS.md:
// the fast path against a floor program, a startup storm of many replicas, the takeover after a
// SIGKILLed holder, the binary's size and the fast path's peak memory. Each figure is a median over
// repeated runs, with min and max, and is compared with its target.
//
// It builds the binary (CGO_ENABLED=0 -trimpath -ldflags "-s -w", as `make build`) and the floor
// program from bench/floor, starts its own redis-server processes on free loopback ports and stops
// them. It exits 0 whether or not targets are met, and 1 when something is broken: a replica exiting
// non-zero, the task running more or less than once, a build or a Redis that fails.
//
//	go run ./bench -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/keys"
)

// gateKeys are the keys of the gate the bench runs (the default name and prefix).
var gateKeys = keys.For("peerdb:maintenance", "default")

// options are the bench's flags.
type options struct {
	out       string
	runs      int
	replicas  int
	storms    int
	task      time.Duration
	takeovers int
	ttl       time.Duration
	limit     time.Duration
	waitN     string
	waitTasks string
	pgDSN     string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "also write the report to this file (make bench: BENCHMARKS.md)")
	flag.IntVar(&o.runs, "runs", 50, "fast path: runs of the gate and of the floor, interleaved")
	flag.IntVar(&o.replicas, "replicas", 100, "startup storm: replicas started at once")
	flag.IntVar(&o.storms, "storms", 5, "startup storm: repetitions")
	flag.DurationVar(&o.task, "task", 2*time.Second, "startup storm: the task's duration (sleep)")
	flag.IntVar(&o.takeovers, "takeovers", 5, "takeover: repetitions")
	flag.DurationVar(&o.ttl, "ttl", 2*time.Second, "takeover: MAINTENANCE_LOCK_TTL")
	flag.StringVar(&o.waitN, "wait-replicas", "10,100,500", "waiting: replica counts, comma-separated")
	flag.StringVar(&o.waitTasks, "waits", "3s,12s", "waiting: lengths of the measured wait, comma-separated, shortest first")
	flag.StringVar(&o.pgDSN, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL for the peer's no-op run (golang-migrate)")
	flag.DurationVar(&o.limit, "limit", 6*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(o, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// binaries are the programs under measurement.
type binaries struct {
	gate       string // stripped, as make build
	unstripped string // the same without -s -w, for go tool nm
	floor      string
	faults     string // built with -tags crashpoints, for the takeover (its holder pauses at a crash point)
}

func run(o options, args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.limit)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "peerdb-maintenance-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	rep := &report{command: strings.TrimSpace("go run ./bench " + strings.Join(args, " ")), started: time.Now()}
	rep.machine = machineInfo(root)
	progress("building the gate and the floor program")
	b := &binaries{gate: filepath.Join(tmp, "peerdb-maintenance"), unstripped: filepath.Join(tmp, "peerdb-maintenance-unstripped"),
		floor: filepath.Join(tmp, "floor"), faults: filepath.Join(tmp, "peerdb-maintenance-crashpoints")}
	for _, bld := range []struct{ out, ldflags, pkg, tags string }{{b.gate, "-s -w", ".", ""}, {b.unstripped, "", ".", ""},
		{b.floor, "-s -w", "./bench/floor", ""}, {b.faults, "-s -w", ".", "crashpoints"}} {
		if err := build(ctx, root, bld.out, bld.ldflags, bld.pkg, "-tags="+bld.tags); err != nil {
			return err
		}
	}
	if st, err := os.Stat(b.floor); err == nil {
		rep.floorSize = st.Size()
	}
	counts, tasks, err := parseWaitFlags(o.waitN, o.waitTasks)
	if err != nil {
		return err
	}
	progress("installing the peer: go install %s@%s into a temporary GOBIN", migratePackage, migrateVersion)
	pr := installPeer(ctx, tmp, o.pgDSN)
	defer pr.cleanup()
	if pr.missing != "" {
		progress("peer not measured: %s", pr.missing)
	}

	progress("fast path: %d runs each of the floor, the gate and the peer, interleaved", o.runs)
	if err := withRedis(ctx, tmp, rep, func(srv *redisServer) (err error) {
		if rep.fast, err = benchFastPath(ctx, b, srv, o.runs, pr); err != nil {
			return fmt.Errorf("fast path: %w", err)
		}
		env := []string{"PEERDB_DEPLOYMENT_VERSION=" + fastPathVersion, "REDIS_URL=" + srv.url()}
		if rep.gateInit, rep.gateInitTop, err = initTrace(ctx, b.gate, env, 11); err != nil {
			return fmt.Errorf("init trace: %w", err)
		}
		rep.floorInit, _, err = initTrace(ctx, b.floor, append(env, "FLOOR_KEY="+gateKeys.Version), 11)
		return err
	}); err != nil {
		return err
	}
	progress("startup storm: %d replicas at once, task sleep %s, %d times", o.replicas, o.task, o.storms)
	if err := withRedis(ctx, tmp, rep, func(srv *redisServer) (err error) {
		rep.storm, err = benchStorm(ctx, b, srv, o.replicas, o.storms, o.task)
		return err
	}); err != nil {
		return err
	}
	if err := withRedis(ctx, tmp, rep, func(srv *redisServer) (err error) {
		rep.waiting, err = benchWaiting(ctx, b, srv, tmp, counts, tasks)
		return err
	}); err != nil {
		return err
	}
	progress("takeover: holder SIGKILLed, MAINTENANCE_LOCK_TTL=%s, %d times", o.ttl, o.takeovers)
	if err := withRedis(ctx, tmp, rep, func(srv *redisServer) (err error) {
		rep.takeover, err = benchTakeover(ctx, b, srv, tmp, o.takeovers, o.ttl)
		return err
	}); err != nil {
		return err
	}
	progress("size: go tool nm on an unstripped build")
	if rep.size, err = measureSize(root, b.gate, b.unstripped); err != nil {
		return fmt.Errorf("size: %w", err)
	}
	progress("size: what leaving things out would save")
	rep.whatIfs = measureWhatIfs(ctx, root, tmp)
	rep.machine.loadEnd = loadAverage()
	rep.took = time.Since(rep.started)

	if o.out != "" {
		rep.plot = strings.TrimSuffix(filepath.Base(o.out), filepath.Ext(o.out)) + "-waiting.svg"
		if err := os.WriteFile(filepath.Join(filepath.Dir(o.out), rep.plot), []byte(rep.waiting.svg()), 0o644); err != nil {
			return err
		}
	}
	md := rep.markdown()
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if broken := rep.broken(); len(broken) > 0 {
		return errors.New("something is broken: " + strings.Join(broken, "; "))
	}
	return nil
}

// withRedis runs f against a redis-server of its own, stopped afterwards.
func withRedis(ctx context.Context, dir string, rep *report, f func(*redisServer) error) error {
	srv, err := startRedis(ctx, dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	if rep.machine.redis == "" {
		rep.machine.redis = srv.version(ctx)
	}
	return f(srv)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", errors.New("run the bench from inside the module (go run ./bench)")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// build compiles pkg statically, as make build does; extra are more go build flags.
func build(ctx context.Context, root, out, ldflags, pkg string, extra ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", out}, extra...)
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// parseWaitFlags reads -wait-replicas and -wait-tasks.
func parseWaitFlags(replicas, tasks string) ([]int, []time.Duration, error) {
	var counts []int
	for _, f := range strings.Split(replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, nil, fmt.Errorf("-wait-replicas: %q is not a replica count of at least 2", f)
		}
		counts = append(counts, n)
	}
	var ds []time.Duration
	for _, f := range strings.Split(tasks, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 || (len(ds) > 0 && d <= ds[len(ds)-1]) {
			return nil, nil, fmt.Errorf("-waits: %q is not a positive duration longer than the one before", f)
		}
		ds = append(ds, d)
	}
	return counts, ds, nil
}
