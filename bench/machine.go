package main

import (
	"bufio"
	"cmp"
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where the figures were taken.
type machine struct {
	cpu       string
	cores     int
	kernel    string
	goVersion string
	redis     string
	loadStart string
	loadEnd   string
	commit    string
	tree      string // "clean", or what differs from the commit
}

func machineInfo(root string) machine {
	m := machine{cpu: "unknown", cores: runtime.NumCPU(), goVersion: runtime.Version(), loadStart: loadAverage()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.commit, m.tree = gitState(root)
	return m
}

// gitState names the commit and says whether the working tree (which is what gets built) differs from it.
// It takes no lock on the index: others may be committing in the same tree.
func gitState(root string) (commit, tree string) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"--no-optional-locks"}, args...)...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimRight(string(out), "\n"), err // porcelain lines start with a space
	}
	commit, err := git("rev-parse", "--short", "HEAD")
	commit = strings.TrimSpace(commit)
	if err != nil {
		return "unknown", "unknown"
	}
	status, err := git("status", "--porcelain")
	if err != nil {
		return commit, "unknown"
	}
	if status == "" {
		return commit, "clean"
	}
	var modified, untracked []string
	for _, line := range strings.Split(status, "\n") {
		if len(line) < 4 {
			continue
		}
		if path := "`" + line[3:] + "`"; strings.HasPrefix(line, "??") {
			untracked = append(untracked, path)
		} else {
			modified = append(modified, path)
		}
	}
	list := func(paths []string) string {
		if len(paths) > 12 {
			return strings.Join(paths[:12], ", ") + " and " + strconv.Itoa(len(paths)-12) + " more"
		}
		return strings.Join(paths, ", ")
	}
	tree = "with changes not committed, built as they are:"
	if len(modified) > 0 {
		tree += " modified " + list(modified) + ";"
	}
	if len(untracked) > 0 {
		tree += " untracked " + list(untracked) + ";"
	}
	return commit, strings.TrimSuffix(tree, ";")
}

// loadAverage is the 1, 5 and 15 minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// initCost is the median package initialization time of one package.
type initCost struct {
	pkg   string
	ms    float64
	bytes float64
}

// initTrace runs bin with GODEBUG=inittrace=1 and returns the total package initialization time of each
// run and the packages whose initialization costs most (medians over the runs).
func initTrace(ctx context.Context, bin string, env []string, runs int) (sample, []initCost, error) {
	var totals sample
	perPkg := map[string]sample{}
	perPkgBytes := map[string]sample{}
	for range runs {
		p, err := runProc(ctx, bin, 30*time.Second, append([]string{"GODEBUG=inittrace=1"}, env...))
		if err != nil {
			return nil, nil, err
		}
		total := 0.0
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			// init internal/config @8.7 ms, 1.2 ms clock, 350552 bytes, 4784 allocs
			f := strings.Fields(line)
			if len(f) < 9 || f[0] != "init" || f[6] != "clock," {
				continue
			}
			clock, err1 := strconv.ParseFloat(f[4], 64)
			bytes, err2 := strconv.ParseFloat(f[7], 64)
			if err1 != nil || err2 != nil {
				continue
			}
			total += clock
			perPkg[f[1]] = append(perPkg[f[1]], clock)
			perPkgBytes[f[1]] = append(perPkgBytes[f[1]], bytes)
		}
		totals = append(totals, total)
	}
	var costs []initCost
	for pkg, s := range perPkg {
		costs = append(costs, initCost{pkg: pkg, ms: s.median(), bytes: perPkgBytes[pkg].median()})
	}
	slices.SortFunc(costs, func(a, b initCost) int { return cmp.Or(cmp.Compare(b.ms, a.ms), cmp.Compare(a.pkg, b.pkg)) })
	return totals, costs, nil
}

// loaded reports whether the 1-minute load average exceeded the number of cores at the start or the end.
func (m machine) loaded() bool {
	for _, l := range []string{m.loadStart, m.loadEnd} {
		if f := strings.Fields(l); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > float64(m.cores) {
				return true
			}
		}
	}
	return false
}
