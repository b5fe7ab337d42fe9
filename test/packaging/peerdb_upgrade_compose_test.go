package packaging_test

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/peerdb-maintenance/peerdb-maintenance/tasks"
)

const peerdbUpgradeComposeFile = "examples/peerdb-compose/peerdb-upgrade.yml"

// The services the upgrade example adds to PeerDB's compose file; every other service it names must be
// one of PeerDB's (testdata/peerdb-services.txt).
var upgradeAdded = []string{"redis", "peerdb-maintenance-install", "peerdb-pause", "peerdb-migrate", "peerdb-resume"}

func loadPeerDBUpgradeCompose(t *testing.T) (alone, merged *types.Project) {
	t.Helper()
	example := filepath.Join(repoRoot(t), filepath.FromSlash(peerdbUpgradeComposeFile))
	var err error
	if alone, err = loadComposeFiles(false, example); err != nil {
		t.Fatalf("%s: %v", peerdbUpgradeComposeFile, err)
	}
	if merged, err = loadComposeFiles(true, peerdbBase(t), example); err != nil {
		t.Fatalf("%s merged into PeerDB's compose file: %v", peerdbUpgradeComposeFile, err)
	}
	return alone, merged
}

func dependsOn(t *testing.T, p *types.Project, service, on, condition string) {
	t.Helper()
	if c := p.Services[service].DependsOn[on].Condition; c != condition {
		t.Errorf("%s depends on %s with condition %q, want %s", service, on, c, condition)
	}
}

func TestPeerDBUpgradeComposeRunsPeerDBsMigratorOnceUnderTheCopiedGate(t *testing.T) {
	alone, p := loadPeerDBUpgradeCompose(t)
	for name := range alone.Services {
		if !slices.Contains(upgradeAdded, name) && !slices.Contains(peerdbServices, name) {
			t.Errorf("service %s is neither added by the example nor one of PeerDB's (%v)", name, peerdbServices)
		}
	}
	install, migrate := p.Services["peerdb-maintenance-install"], p.Services["peerdb-migrate"]
	if !slices.Equal(install.Command, types.ShellCommand{"install", "/gate"}) || len(install.Volumes) != 1 || install.Volumes[0].Target != "/gate" {
		t.Errorf("install: command %q, volumes %+v; want install /gate into the shared volume", install.Command, install.Volumes)
	}
	// The migrator runs in PeerDB's own image, started by the copied gate.
	if !strings.HasPrefix(migrate.Image, "ghcr.io/peerdb-io/peerdb-server:stable-") {
		t.Errorf("peerdb-migrate image %q, want PeerDB's peerdb-server", migrate.Image)
	}
	if !slices.Equal(migrate.Entrypoint, types.ShellCommand{"/gate/peerdb-maintenance"}) ||
		!slices.Equal(migrate.Command, types.ShellCommand{"--", "/home/peerdb/peerdb-server"}) {
		t.Errorf("peerdb-migrate runs %q %q, want the copied gate in front of /home/peerdb/peerdb-server", migrate.Entrypoint, migrate.Command)
	}
	if len(migrate.Volumes) != 1 || migrate.Volumes[0].Source != install.Volumes[0].Source || !migrate.Volumes[0].ReadOnly {
		t.Errorf("peerdb-migrate mounts %+v, want the install volume read-only at /gate", migrate.Volumes)
	}
	env := composeGateEnv(migrate)
	if env["PEERDB_MIGRATIONS_ONLY"] != "true" || env["PEERDB_CATALOG_HOST"] != "catalog" {
		t.Errorf("peerdb-migrate: PEERDB_MIGRATIONS_ONLY %q, PEERDB_CATALOG_HOST %q", env["PEERDB_MIGRATIONS_ONLY"], env["PEERDB_CATALOG_HOST"])
	}
	if v := composeGateEnv(p.Services["peerdb"])["PEERDB_MIGRATIONS_DISABLED"]; v != "true" {
		t.Errorf("peerdb: PEERDB_MIGRATIONS_DISABLED %q, want true: only the gate's run migrates", v)
	}
	// Which service waits for what.
	dependsOn(t, p, "peerdb-migrate", "peerdb-maintenance-install", "service_completed_successfully")
	dependsOn(t, p, "peerdb-migrate", "peerdb-pause", "service_completed_successfully")
	dependsOn(t, p, "peerdb", "peerdb-migrate", "service_completed_successfully")
	dependsOn(t, p, "peerdb-resume", "peerdb-migrate", "service_completed_successfully")
	for _, w := range []string{"flow-worker", "flow-snapshot-worker"} {
		dependsOn(t, p, "peerdb-resume", w, "service_started")
		if _, ok := p.Services[w].DependsOn["peerdb-pause"]; ok {
			t.Errorf("%s waits for the pause, which needs a worker running", w)
		}
	}

	gates := map[string]string{}
	for _, name := range []string{"peerdb-pause", "peerdb-migrate", "peerdb-resume"} {
		s := p.Services[name]
		env := composeGateEnv(s)
		gates[name] = env["MAINTENANCE_NAME"]
		known := knownVariables()
		for k := range env {
			if !known[k] && !strings.HasPrefix(k, "PEERDB_MIGRATIONS_") && !strings.HasPrefix(k, "PEERDB_CATALOG_") {
				t.Errorf("%s sets %s, which neither the gate nor PeerDB's migrator reads", name, k)
			}
		}
		run := gateRun{env: env}
		if target := env["MAINTENANCE_TASKS_FILE"]; target != "" {
			for _, c := range s.Configs {
				if c.Target == target {
					run.taskFile = p.Configs[c.Source].Content
				}
			}
			if _, err := tasks.Parse([]byte(run.taskFile), "tasks.yaml", tasks.LoadContext{}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		checkGateAccepts(t, run)
	}
	if gates["peerdb-pause"] == gates["peerdb-migrate"] || gates["peerdb-migrate"] == gates["peerdb-resume"] || gates["peerdb-pause"] == gates["peerdb-resume"] {
		t.Errorf("gate names %v: each step records its version under a gate of its own", gates)
	}
}

// A `docker compose run` of the upgrade's gates goes while the old release runs: without --no-deps it
// starts the service's dependencies and recreates those whose configuration changed (flow-api and the
// workers on the new images) before the pause it is meant to run first.
func TestPeerDBUpgradeComposeRunsLeaveTheRunningReleaseAlone(t *testing.T) {
	run := regexp.MustCompile(`docker compose \$F run\b[^\n]*`)
	found := 0
	for _, file := range []string{"docs/peerdb-upgrade.md", peerdbUpgradeComposeFile} {
		for _, cmd := range run.FindAllString(string(readRepoFile(t, file)), -1) {
			found++
			if !strings.Contains(cmd, "--no-deps") {
				t.Errorf("%s: %q starts the service's dependencies and may recreate them on the new release: add --no-deps", file, cmd)
			}
		}
	}
	if found == 0 {
		t.Errorf("no `docker compose $F run` in docs/peerdb-upgrade.md or %s", peerdbUpgradeComposeFile)
	}
}
