package runner

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

func TestFreshInstallRunsTasksInOrderAndRecords(t *testing.T) {
	h := newHarness(t)
	var order []string
	var seen tasks.Env
	mk := func(name string) tasks.Spec {
		return spec(name, func(_ context.Context, env tasks.Env) error {
			order = append(order, name)
			seen = env
			return nil
		})
	}
	r, _ := h.runner([]tasks.Spec{mk("first"), mk("second"), mk("third")})
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Outcome != "recorded" {
		t.Errorf("outcome = %q, want recorded", res.Outcome)
	}
	if strings.Join(order, ",") != "first,second,third" {
		t.Errorf("order = %v", order)
	}
	if seen.FromVersion != "" || seen.ToVersion != "1.1.0" || seen.FencingToken <= 0 {
		t.Errorf("task env = from %q to %q token %d, want from \"\" to 1.1.0 and a positive token", seen.FromVersion, seen.ToVersion, seen.FencingToken)
	}
	if got := h.get(h.keys.Version); got != "1.1.0" {
		t.Errorf("recorded version = %q", got)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Progress) {
		t.Error("lock or progress left behind after a successful run")
	}
	hist := h.history()
	if len(hist) != 1 || hist[0].Outcome != OutcomeSucceeded || hist[0].Version != "1.1.0" || hist[0].Holder != "test-holder" || hist[0].FencingToken != seen.FencingToken {
		t.Errorf("history = %+v", hist)
	}
}

func TestSameVersionTakesTheFastPathWithOneCommand(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.1.0")
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
	ctx := context.Background()
	if err := h.rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(ctx)
	if err != nil || res.Outcome != "up-to-date" {
		t.Fatalf("run = %+v, %v", res, err)
	}
	if c.get("migrate") != 0 {
		t.Error("task ran although the version was recorded")
	}
	stats, err := h.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	// Only the connection handshake (HELLO) and one GET, besides this test's own INFO.
	for _, line := range strings.Split(stats, "\n") {
		if !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		name := strings.TrimPrefix(line[:strings.IndexByte(line, ':')], "cmdstat_")
		switch name {
		case "hello", "info", "config|resetstat":
		case "get":
			if !strings.Contains(line, "calls=1,") {
				t.Errorf("fast path: %s, want exactly one GET", line)
			}
		default:
			t.Errorf("fast path issued %s", line)
		}
	}
	if !strings.Contains(logs.String(), "version already recorded") {
		t.Errorf("no fast path log line in:\n%s", logs)
	}
}

func TestForceRunsAgainWhenTheVersionIsRecorded(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.1.0")
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_FORCE", "true")
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.get("migrate") != 1 {
		t.Errorf("forced run ran the task %d times, want 1", c.get("migrate"))
	}
	if len(h.history()) != 1 {
		t.Error("forced run not in history")
	}
}

func TestDowngradeGuard(t *testing.T) {
	cases := []struct {
		name, recorded, policy string
		wantErr                error
		wantRun                bool
		wantVersion            string
	}{
		{"old replica restarting during rolling update skips", "1.2.0", "skip", nil, false, "1.2.0"},
		{"downgrade refused with fail", "1.2.0", "fail", ErrDowngrade, false, "1.2.0"},
		{"downgrade runs with run", "1.2.0", "run", nil, true, "1.1.0"},
		{"v-prefixed versions are compared as semver", "v1.2.0", "skip", nil, false, "v1.2.0"},
		{"upgrade from an older version runs", "1.0.9", "fail", nil, true, "1.1.0"},
		{"non-semver recorded version is compared for equality only", "abc1234", "fail", nil, true, "1.1.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setVersion(tc.recorded)
			var c counter
			r, _ := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_DOWNGRADE", tc.policy)
			_, err := r.Run(context.Background())
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if ran := c.get("migrate") == 1; ran != tc.wantRun {
				t.Errorf("task ran = %v, want %v", ran, tc.wantRun)
			}
			if got := h.get(h.keys.Version); got != tc.wantVersion {
				t.Errorf("recorded = %q, want %q", got, tc.wantVersion)
			}
			if !tc.wantRun && h.exists(h.keys.Fence) {
				t.Error("a lock was taken for a skipped or refused downgrade")
			}
		})
	}
}

func TestVersionRecordedBeforeTheLockIsTakenIsDoubleChecked(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
	// Another replica records the version between our look at the lock and our attempt to take it.
	r.beforeObtain = func() { h.setVersion("1.1.0") }
	res, err := r.Run(context.Background())
	if err != nil || res.Outcome != "waited" {
		t.Fatalf("run = %+v, %v", res, err)
	}
	if c.get("migrate") != 0 {
		t.Error("task ran although another replica recorded the version")
	}
	if h.exists(h.keys.Fence) || h.exists(h.keys.Lock) {
		t.Error("a fencing token was taken, or the lock kept, after the double check found the version")
	}
	if !strings.Contains(logs.String(), "version recorded by another replica meanwhile") {
		t.Errorf("double check not logged:\n%s", logs)
	}
}

func TestNewerVersionRecordedBeforeTheLockIsTakenSkipsNamingIt(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.0.0")
	var c counter
	r, logs := h.runner([]tasks.Spec{c.task("migrate", nil)})
	// A newer replica records its version between our look at the lock and our attempt to take it.
	r.beforeObtain = func() { h.setVersion("1.2.0") }
	res, err := r.Run(context.Background())
	if err != nil || res.Outcome != "downgrade-skipped" {
		t.Fatalf("run = %+v, %v", res, err)
	}
	if c.get("migrate") != 0 {
		t.Error("task ran although a newer version was recorded")
	}
	var skip map[string]any
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "recorded version is newer, skipping") {
			if err := json.Unmarshal([]byte(line), &skip); err != nil {
				t.Fatal(err)
			}
		}
	}
	if skip["previous_version"] != "1.2.0" {
		t.Errorf("the skip names previous_version %v, want the newer 1.2.0 now recorded:\n%s", skip["previous_version"], logs)
	}
}

func TestWhenConstraintsSkipTasksAndBadVersionsAreConfigErrors(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.0.0")
	parse := func(yaml string) []tasks.Spec {
		specs, err := tasks.Parse([]byte(yaml), "test.yaml", tasks.LoadContext{Getenv: os.Getenv, GateTag: h.keys.Tag})
		if err != nil {
			t.Fatal(err)
		}
		return specs
	}
	dir := t.TempDir()
	specs := parse(`tasks:
  - name: old-only
    exec: {command: [touch, ` + filepath.Join(dir, "old") + `]}
    when: {from: "<0.30.0"}
  - name: from-one
    exec: {command: [touch, ` + filepath.Join(dir, "one") + `]}
    when: {from: ">=1.0.0 <1.1.0"}
`)
	r, logs := h.runner(specs)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); err == nil {
		t.Error("task gated on from <0.30.0 ran for an upgrade from 1.0.0")
	}
	if _, err := os.Stat(filepath.Join(dir, "one")); err != nil {
		t.Error("task gated on from >=1.0.0 <1.1.0 did not run")
	}
	if !strings.Contains(logs.String(), "task skipped, constraint not met") {
		t.Error("skipped task not logged")
	}

	h2 := newHarness(t)
	h2.setVersion("abc1234")
	r2, _ := h2.runner(specs)
	_, err := r2.Run(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "old-only") || !strings.Contains(err.Error(), "abc1234") {
		t.Fatalf("err = %v, want a configuration error naming the task and the version", err)
	}
	if h2.exists(h2.keys.Lock) || h2.exists(h2.keys.Fence) {
		t.Error("a lock was taken before the configuration error")
	}
}

func TestDryRunPrintsThePlanAndChangesNothing(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, out := h.runner([]tasks.Spec{c.task("migrate", nil)}, "MAINTENANCE_DRY_RUN", "true", "LOG_FORMAT", "text")
	res, err := r.Run(context.Background())
	if err != nil || res.Outcome != "dry-run" {
		t.Fatalf("run = %+v, %v", res, err)
	}
	if c.get("migrate") != 0 || h.exists(h.keys.Version) || h.exists(h.keys.Lock) || h.exists(h.keys.Fence) {
		t.Error("dry run changed something")
	}
	if !strings.Contains(out.String(), "migrate") || !strings.Contains(out.String(), "RUN") {
		t.Errorf("plan does not list the task:\n%s", out)
	}
}

func TestTerminationLogGetsTheOutcome(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := h.runner(nil, "MAINTENANCE_TERMINATION_LOG", path)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "version 1.1.0: recorded") {
		t.Errorf("termination log = %q", b)
	}
}

func TestAMissingTerminationLogIsSkippedWithADebugLine(t *testing.T) {
	// The gate copied into another image: no /dev/termination-log there, or none this user can write.
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "absent", "termination-log")
	r, logs := h.runner(nil, "MAINTENANCE_TERMINATION_LOG", path)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, `"msg":"no termination log written"`) {
		t.Errorf("want one debug line and no warning for a missing termination log; logs:\n%s", out)
	}
}

func TestLockIsReleasedAfterATaskFails(t *testing.T) {
	h := newHarness(t)
	var c counter
	r, _ := h.runner([]tasks.Spec{c.task("bad", errors.New("boom"))})
	_, err := r.Run(context.Background())
	var te *TaskError
	if !errors.As(err, &te) || te.Task != "bad" || !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("err = %v, want a TaskError for bad", err)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Version) {
		t.Error("lock left or version recorded after a failure")
	}
	hist := h.history()
	if len(hist) != 1 || hist[0].Outcome != OutcomeFailed || hist[0].Task != "bad" || hist[0].Error != "boom" {
		t.Errorf("history = %+v", hist)
	}
}

func TestDryRunPlanInJSONShowsDoneSkippedAndRun(t *testing.T) {
	h := newHarness(t)
	h.setVersion("1.0.0")
	ctx := context.Background()
	specs, err := tasks.Parse([]byte(`tasks:
  - name: first
    exec: {command: ["true"]}
  - name: old-only
    exec: {command: ["true"]}
    when: {from: "<0.30.0"}
  - name: third
    exec: {command: ["true"]}
`), "plan.yaml", tasks.LoadContext{Getenv: os.Getenv, GateTag: h.keys.Tag})
	if err != nil {
		t.Fatal(err)
	}
	// first is done under its current definition, third under another one: third runs again.
	h.rdb.HSet(ctx, h.keys.Progress, "version", "1.1.0", "done:first", `{"digest":"`+specs[0].Digest+`"}`,
		"done:third", `{"digest":"0123456789abcdef"}`)
	r, out := h.runner(specs, "MAINTENANCE_DRY_RUN", "true", "LOG_FORMAT", "json")
	if _, err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	var plan Plan
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&plan); err != nil {
		t.Fatalf("plan is not JSON: %v\n%s", err, text)
	}
	got := []string{}
	for _, s := range plan.Steps {
		got = append(got, s.Task+":"+s.Action)
	}
	if strings.Join(got, ",") != "first:done,old-only:skip,third:run" || plan.Previous != "1.0.0" || plan.Version != "1.1.0" {
		t.Errorf("plan = %+v", plan)
	}
	if r := plan.Steps[2].Reason; !strings.Contains(r, "another definition") {
		t.Errorf("plan gives the changed task the reason %q, want it to say the definition changed", r)
	}
	if h.exists(h.keys.Lock) || h.exists(h.keys.Fence) || h.get(h.keys.Version) != "1.0.0" {
		t.Error("dry run changed something")
	}
}

func TestGateRunsOverAUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	h := newHarness(t)
	srv := redistest.Start(t, "--unixsocket", sock, "--unixsocketperm", "700")
	r, _ := h.runner(nil, "REDIS_URL", "unix://"+sock+"?db=0")
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatalf("run over unix://: %v", err)
	}
	if v, _ := srv.Client().Get(context.Background(), h.keys.Version).Result(); v != "1.1.0" {
		t.Errorf("version over the unix socket = %q", v)
	}
}

func TestARefusedRecordSaysWhichRecordWasRefused(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.rdb.Do(ctx, "ACL", "SETUSER", "gate", "on", ">gate-pw", "~*", "&*", "+@all", "-xadd").Err(); err != nil {
		t.Fatal(err)
	}
	r, _ := h.runner(nil, "REDIS_URL", "redis://gate:gate-pw@"+h.srv.Addr+"/0")
	_, err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "record version 1.1.0: NOPERM") || !strings.HasSuffix(err.Error(), "so nothing was written") {
		t.Fatalf("err = %v, want it to say that recording version 1.1.0 was refused and nothing was written", err)
	}
	if v := h.get(h.keys.Version); v != "" {
		t.Errorf("version %q recorded although the record was refused", v)
	}
}
