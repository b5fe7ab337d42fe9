package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/flowapitest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/pgtest"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/testkit/redistest"
)

// A whole PeerDB upgrade as docs/peerdb-upgrade.md runs it: the gate copied by its own install command
// into a directory of another tree (standing in for PeerDB's image and its emptyDir), run as another
// user, wrapping a catalog migrator (testdata/peerdb-upgrade/migrate.sh, applying SQL files to a real
// PostgreSQL) between a pause and a resume of the mirrors through the flow-api stand-in.

// upgradeReplicas is how many replicas start at once, as in a rollout of peerdb-server.
const upgradeReplicas = 5

// replicaUID is the user of "the other image" when the test can switch users (it runs as root).
const replicaUID = 65534

type upgradeRig struct {
	redis      *redistest.Server
	pg         *pgtest.Server
	db         string
	api        *flowapitest.Server
	shared     string // what every replica reads: the task file, the migrator and its migrations
	migrations string
}

func newUpgradeRig(t *testing.T) *upgradeRig {
	t.Helper()
	u := &upgradeRig{redis: redistest.Start(t), pg: pgtest.Start(t), api: flowapitest.Start(t), shared: worldReadableDir(t)}
	u.db = u.pg.NewDatabase(t)
	u.pg.QueryIn(t, u.db, `CREATE TABLE schema_history (version int PRIMARY KEY, applied timestamptz NOT NULL);
		CREATE TABLE migrator_runs (id serial PRIMARY KEY, began timestamptz NOT NULL, finished timestamptz, fencing_token bigint)`)
	u.api.Do(func(s *flowapitest.Server) {
		s.Mirrors = []flowapitest.Mirror{{Name: "orders_cdc", IsCDC: true, Status: "STATUS_RUNNING"}}
	})
	u.migrations = filepath.Join(u.shared, "migrations")
	if err := os.Mkdir(u.migrations, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"V1__mirrors.sql", "V2__mirror_status.sql"} {
		copyFile(t, filepath.Join("testdata/peerdb-upgrade/migrations", f), filepath.Join(u.migrations, f), 0o644)
	}
	migrator := filepath.Join(u.shared, "migrate.sh")
	copyFile(t, "testdata/peerdb-upgrade/migrate.sh", migrator, 0o755)
	tmpl, err := os.ReadFile("testdata/peerdb-upgrade/tasks.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	tasks := strings.NewReplacer("${FLOW_API_URL}", u.api.URL, "${MIGRATOR}", migrator).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(u.shared, "tasks.yaml"), []byte(tasks), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// otherUser returns the credential of the other image's user, or nil when the test cannot switch.
func otherUser() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: replicaUID, Gid: replicaUID}}
}

// start installs the gate into a tree of each replica's own (its root, and in it the gate's
// directory, writable as an emptyDir is), as that replica's user, and starts every copy at once.
func (u *upgradeRig) start(t *testing.T, n int, extra ...string) []*replica {
	t.Helper()
	var cmds []*exec.Cmd
	for i := range n {
		root := worldReadableDir(t)
		gate := filepath.Join(root, "gate")
		if err := os.Mkdir(gate, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(gate, 0o777); err != nil {
			t.Fatal(err)
		}
		install := exec.Command(installedCopy(t), "install", gate)
		install.Env, install.SysProcAttr = []string{}, otherUser()
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("install into %s: %v\n%s", gate, err, out)
		}
		env := map[string]string{
			"PATH":                      os.Getenv("PATH"),
			"PEERDB_DEPLOYMENT_VERSION": "v0.37.0",
			"REDIS_URL":                 u.redis.URL(),
			"MAINTENANCE_TASKS_FILE":    filepath.Join(u.shared, "tasks.yaml"),
			"MAINTENANCE_LOCK_TTL":      "5s",
			"MAINTENANCE_WAIT_TIMEOUT":  "50s",
			"MAINTENANCE_HOLDER":        "peerdb-server-" + strconv.Itoa(i),
			"MIGRATIONS_DIR":            u.migrations,
			"PGHOST":                    u.pg.Host, "PGPORT": strconv.Itoa(u.pg.Port), "PGUSER": u.pg.User,
			"PGPASSWORD": u.pg.Password, "PGDATABASE": u.db,
			// No HOME, no termination log: the other image has neither for this user.
		}
		for j := 0; j+1 < len(extra); j += 2 {
			env[extra[j]] = extra[j+1]
		}
		bin := filepath.Join(gate, "peerdb-maintenance")
		cmd := exec.Command(bin)
		cmd.Dir, cmd.SysProcAttr = root, otherUser()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmds = append(cmds, cmd)
	}
	var rs []*replica
	for _, cmd := range cmds {
		rs = append(rs, startProcess(t, cmd))
	}
	return rs
}

// migratorRuns returns when each run of the migrator began and finished (zero: it did not finish).
func (u *upgradeRig) migratorRuns(t *testing.T) (began, finished []time.Time) {
	t.Helper()
	for _, row := range u.pg.QueryIn(t, u.db, `SELECT extract(epoch FROM began)::text, coalesce(extract(epoch FROM finished)::text, '')
		FROM migrator_runs ORDER BY id`) {
		began, finished = append(began, epoch(t, row[0])), append(finished, epoch(t, row[1]))
	}
	return began, finished
}

func epoch(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMicro(int64(f * 1e6))
}

func (u *upgradeRig) applied(t *testing.T) string {
	t.Helper()
	var vs []string
	for _, row := range u.pg.QueryIn(t, u.db, "SELECT version FROM schema_history ORDER BY version") {
		vs = append(vs, row[0])
	}
	return strings.Join(vs, ",")
}

// maintenancePosts returns the POST /v1/instance/maintenance requests that started and that ended
// maintenance, and every request the stand-in received.
func (u *upgradeRig) maintenancePosts() (starts, ends []flowapitest.Request, all []flowapitest.Request) {
	all = u.api.Requests()
	for _, r := range all {
		if r.Method != "POST" || r.Path != "/v1/instance/maintenance" {
			continue
		}
		if strings.Contains(r.Body, "MAINTENANCE_STATUS_START") {
			starts = append(starts, r)
		} else if strings.Contains(r.Body, "MAINTENANCE_STATUS_END") {
			ends = append(ends, r)
		}
	}
	return starts, ends, all
}

func (u *upgradeRig) mirrorsPaused() (mode bool, status string) {
	u.api.Do(func(s *flowapitest.Server) { mode, status = s.ModeEnabled, s.Mirrors[0].Status })
	return mode, status
}

func waitAll(t *testing.T, rs []*replica) []int {
	t.Helper()
	var codes []int
	for _, r := range rs {
		codes = append(codes, r.wait(t))
	}
	return codes
}

func TestPeerDBUpgradeMigratesTheCatalogOnceBetweenPauseAndResume(t *testing.T) {
	u := newUpgradeRig(t)
	rs := u.start(t, upgradeReplicas)
	for i, code := range waitAll(t, rs) {
		if code != 0 {
			t.Errorf("replica %d: exit %d; stderr:\n%s", i, code, rs[i].stderr)
		}
	}
	began, finished := u.migratorRuns(t)
	if len(began) != 1 || finished[0].IsZero() {
		t.Fatalf("the migrator ran %d times (finished: %v), want exactly once", len(began), finished)
	}
	if got := u.applied(t); got != "1,2" {
		t.Errorf("applied migrations %q, want 1,2", got)
	}
	starts, ends, all := u.maintenancePosts()
	if len(starts) != 1 || len(ends) != 1 {
		t.Fatalf("%d starts and %d ends of maintenance, want one each", len(starts), len(ends))
	}
	// The pause is over (its last request answered) before the migrator begins; the resume begins
	// after the migrator finished.
	var lastOfPause flowapitest.Request
	for _, r := range all {
		if r.Time.Equal(ends[0].Time) || r.Time.After(ends[0].Time) {
			break
		}
		lastOfPause = r
	}
	if !starts[0].Time.Before(began[0]) || !lastOfPause.Time.Before(began[0]) {
		t.Errorf("the migrator began at %s, before the pause was over (start %s, its last request %s %s at %s)",
			began[0].Format(time.RFC3339Nano), starts[0].Time.Format(time.RFC3339Nano), lastOfPause.Method, lastOfPause.Path, lastOfPause.Time.Format(time.RFC3339Nano))
	}
	if !finished[0].Before(ends[0].Time) {
		t.Errorf("the resume began at %s, before the migrator finished at %s", ends[0].Time.Format(time.RFC3339Nano), finished[0].Format(time.RFC3339Nano))
	}
	if mode, status := u.mirrorsPaused(); mode || status != "STATUS_RUNNING" {
		t.Errorf("after the upgrade: maintenance mode %v, mirror %s; want off and running", mode, status)
	}
	if got := getKey(t, u.redis, gateKeys.Version); got != "v0.37.0" {
		t.Errorf("recorded version %q, want v0.37.0", got)
	}
}

func TestPeerDBUpgradeWhoseMigratorFailsHalfwayIsResumedByTheNextAttempt(t *testing.T) {
	u := newUpgradeRig(t)
	good := filepath.Join(u.migrations, "V2__mirror_status.sql")
	copyFile(t, "testdata/peerdb-upgrade/V2__mirror_status.broken.sql", good, 0o644)

	rs := u.start(t, upgradeReplicas, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	for i, code := range waitAll(t, rs) {
		if code != 1 {
			t.Errorf("replica %d: exit %d, want 1 (the migrator failed, or failed less than the cooldown ago); stderr:\n%s", i, code, rs[i].stderr)
		}
	}
	if began, _ := u.migratorRuns(t); len(began) != 1 {
		t.Fatalf("the failing migrator ran %d times, want once: the other replicas wait out the cooldown", len(began))
	}
	if got := u.applied(t); got != "1" {
		t.Errorf("applied migrations %q, want only 1: V2 failed inside its transaction", got)
	}
	if got := getKey(t, u.redis, gateKeys.Version); got != "" {
		t.Errorf("recorded version %q after a failed migration, want none", got)
	}
	if mode, status := u.mirrorsPaused(); !mode || status != "STATUS_PAUSED" {
		t.Errorf("after the failure: maintenance mode %v, mirror %s; want the mirrors left paused", mode, status)
	}
	if _, ends, _ := u.maintenancePosts(); len(ends) != 0 {
		t.Errorf("%d ends of maintenance after a failed migration, want none", len(ends))
	}
	status := exec.Command(binary, "status")
	status.Env = []string{"REDIS_URL=" + u.redis.URL()}
	if out, _ := status.CombinedOutput(); !strings.Contains(string(out), "catalog-migrate") {
		t.Errorf("status does not name the failed task:\n%s", out)
	}

	// Within the cooldown, a restarted replica exits 1 at once and runs nothing.
	again := u.start(t, 1, "MAINTENANCE_FAILURE_COOLDOWN", "1h")
	if code := again[0].wait(t); code != 1 || !strings.Contains(again[0].stderr.String(), "MAINTENANCE_FAILURE_COOLDOWN") {
		t.Errorf("within the cooldown: exit %d, want 1 naming the cooldown; stderr:\n%s", code, again[0].stderr)
	}

	// The fixed release (a new image) after the cooldown: the next attempt resumes after the pause,
	// migrates and resumes the mirrors.
	copyFile(t, "testdata/peerdb-upgrade/migrations/V2__mirror_status.sql", good, 0o644)
	rs = u.start(t, upgradeReplicas, "MAINTENANCE_FAILURE_COOLDOWN", "1ms")
	for i, code := range waitAll(t, rs) {
		if code != 0 {
			t.Errorf("next attempt, replica %d: exit %d; stderr:\n%s", i, code, rs[i].stderr)
		}
	}
	if began, _ := u.migratorRuns(t); len(began) != 2 {
		t.Errorf("the migrator ran %d times in all, want 2 (the failed attempt and the next)", len(began))
	}
	if got := u.applied(t); got != "1,2" {
		t.Errorf("applied migrations %q, want 1,2", got)
	}
	starts, ends, _ := u.maintenancePosts()
	if len(starts) != 1 || len(ends) != 1 {
		t.Errorf("%d starts and %d ends of maintenance, want one each: the next attempt resumes after the finished pause", len(starts), len(ends))
	}
	if mode, status := u.mirrorsPaused(); mode || status != "STATUS_RUNNING" {
		t.Errorf("after the next attempt: maintenance mode %v, mirror %s; want off and running", mode, status)
	}
	if got := getKey(t, u.redis, gateKeys.Version); got != "v0.37.0" {
		t.Errorf("recorded version %q, want v0.37.0", got)
	}
}
