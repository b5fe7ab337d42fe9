// Command mutate proves that every safeguard has a test that fails without it: it deletes or breaks
// each safeguard in turn (a hand-made mutant, listed in mutants.go), runs the tests meant to catch it,
// and expects them to fail. The tree is never modified: each mutant is handed to go test through an
// overlay (GOFLAGS=-overlay, which the tests' own go build of the binary inherits). It prints one line
// per mutant and exits 1 when any survives, or when one no longer applies to the code.
//
//	go run ./scripts/mutate [-run REGEXP] [-timeout 5m]
//	go run ./scripts/mutate -check   (only that every mutant still applies: fast, run by .ci/run)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// mutant is one safeguard broken on purpose.
type mutant struct {
	// Name says which safeguard is gone, in the words of DESIGN.md.
	Name string
	// File is relative to the repository root; Old must occur in it exactly once and becomes New.
	File, Old, New string
	// Pkg and Run select the tests that must fail.
	Pkg, Run string
}

func main() {
	only := flag.String("run", "", "only the mutants whose name matches this regular expression")
	timeout := flag.Duration("timeout", 5*time.Minute, "longest test run of one mutant")
	check := flag.Bool("check", false, "only check that every mutant applies to the code, without running tests")
	flag.Parse()
	if *check {
		os.Exit(checkAll())
	}
	filter := regexp.MustCompile(*only)
	tmp, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)
	var ran, survived, stale int
	start := time.Now()
	for i, m := range mutants {
		if !filter.MatchString(m.Name) {
			continue
		}
		ran++
		began := time.Now()
		verdict, detail := try(tmp, i, m, *timeout)
		fmt.Printf("%-8s %-70s %5.1fs %s\n", verdict, m.Name, time.Since(began).Seconds(), detail)
		switch verdict {
		case "SURVIVED":
			survived++
		case "STALE":
			stale++
		}
	}
	fmt.Printf("%d mutants, %d survived, %d stale, in %s\n", ran, survived, stale, time.Since(start).Round(time.Second))
	if survived+stale > 0 {
		os.Exit(1)
	}
}

// try applies mutant m through an overlay and runs its tests. The verdict is "killed" (a test failed),
// "SURVIVED" (every test passed), or "STALE" (the mutant does not apply or does not build: the list
// must follow the code).
func try(tmp string, i int, m mutant, timeout time.Duration) (string, string) {
	src, err := os.ReadFile(m.File)
	if err != nil {
		return "STALE", err.Error()
	}
	if n := bytes.Count(src, []byte(m.Old)); n != 1 {
		return "STALE", fmt.Sprintf("the code to mutate occurs %d times in %s", n, m.File)
	}
	abs, _ := filepath.Abs(m.File)
	mutated := filepath.Join(tmp, fmt.Sprintf("%d-%s", i, filepath.Base(m.File)))
	if err := os.WriteFile(mutated, bytes.Replace(src, []byte(m.Old), []byte(m.New), 1), 0o644); err != nil {
		fatal(err)
	}
	overlay := filepath.Join(tmp, fmt.Sprintf("%d.json", i))
	b, _ := json.Marshal(map[string]map[string]string{"Replace": {abs: mutated}})
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", m.Run, m.Pkg)
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -overlay="+overlay))
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		return "killed", "(timed out: a test hangs without the safeguard)"
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return "STALE", "does not build:\n" + string(out)
	case err == nil:
		return "SURVIVED", "no test of " + m.Pkg + " -run '" + m.Run + "' failed"
	}
	return "killed", "by " + strings.Join(failed(out), ", ")
}

// checkAll reports every mutant whose code no longer occurs exactly once, or whose tests are no longer
// in its package (each alternative of Run must match a test there), and returns the exit code.
func checkAll() int {
	code := 0
	for _, m := range mutants {
		src, err := os.ReadFile(m.File)
		if n := bytes.Count(src, []byte(m.Old)); err != nil || n != 1 {
			fmt.Printf("STALE    %s: the code to mutate occurs %d times in %s %v\n", m.Name, n, m.File, err)
			code = 1
		}
		if missing := missingTests(m); missing != "" {
			fmt.Printf("STALE    %s: %s\n", m.Name, missing)
			code = 1
		}
	}
	if code == 0 {
		fmt.Printf("%d mutants apply to the code\n", len(mutants))
	}
	return code
}

// testFunc finds the test functions of a _test.go file.
var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)

// missingTests says which alternative of m.Run matches no test function of m.Pkg ("" when each does).
func missingTests(m mutant) string {
	files, _ := filepath.Glob(filepath.Join(m.Pkg, "*_test.go"))
	var names []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return err.Error()
		}
		for _, sub := range testFunc.FindAllStringSubmatch(string(src), -1) {
			names = append(names, sub[1])
		}
	}
	for _, alt := range strings.Split(m.Run, "|") {
		// A subtest pattern (Test/case) names its top-level test before the slash.
		alt, _, _ = strings.Cut(alt, "/")
		re, err := regexp.Compile(alt)
		if err != nil {
			return "-run " + alt + ": " + err.Error()
		}
		if !slices.ContainsFunc(names, re.MatchString) {
			return "no test of " + m.Pkg + " matches -run " + alt
		}
	}
	return ""
}

// failed returns the names of the failed tests in go test's output.
func failed(out []byte) []string {
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "---" && f[1] == "FAIL:" && !strings.Contains(f[2], "/") {
			names = append(names, f[2])
		}
	}
	if len(names) == 0 {
		return []string{"a failing test run"}
	}
	return names
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(2)
}
