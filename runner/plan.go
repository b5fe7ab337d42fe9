package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/escape"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/version"
)

// PlanStep is what a run would do with one task.
type PlanStep struct {
	Task   string `json:"task"`
	Kind   string `json:"kind"`
	Action string `json:"action"` // "run", "skip" or "done"
	Reason string `json:"reason,omitempty"`
}

// Plan is the dry-run output: which tasks would run for this upgrade, which are skipped and why.
type Plan struct {
	Version  string     `json:"version"`
	Previous string     `json:"previous_version"`
	Steps    []PlanStep `json:"steps"`
}

// plan prints what a run would do and changes nothing: no lock, no write.
func (r *Runner) plan(ctx context.Context, recorded string) (Result, error) {
	p := Plan{Version: r.cfg.Version, Previous: recorded, Steps: []PlanStep{}}
	progress, err := r.readProgress(ctx)
	if err != nil {
		return Result{}, err
	}
	resuming := progress != nil && version.Equal(progress.Version, r.cfg.Version) && !r.cfg.Force
	skips, err := r.skips(recorded)
	if err != nil {
		return Result{}, err
	}
	for _, s := range r.specs {
		step := PlanStep{Task: s.Name, Kind: s.Kind, Action: "run"}
		if resuming && progress.IsDone(s.Name, s.Digest) {
			step.Action, step.Reason = "done", "finished by an earlier attempt for this version"
		} else if resuming && slices.Contains(progress.Done, s.Name) {
			step.Reason = "finished by an earlier attempt under another definition: it changed, so it runs again"
		} else if reason := skips[s.Name]; reason != "" {
			step.Action, step.Reason = "skip", reason
		}
		p.Steps = append(p.Steps, step)
	}
	if r.cfg.LogFormat == "json" {
		enc := json.NewEncoder(r.out)
		enc.SetIndent("", "  ")
		err = enc.Encode(p)
	} else {
		err = writePlanText(r, p)
	}
	r.log.Info("dry run: plan printed, nothing changed", "version", r.cfg.Version, "previous_version", recorded)
	return Result{Outcome: "dry-run", Previous: recorded}, err
}

func writePlanText(r *Runner, p Plan) error {
	prev := p.Previous
	if prev == "" {
		prev = "(none: fresh install)"
	}
	fmt.Fprintf(r.out, "plan for %s -> %s\n", escape.Text(prev), escape.Text(p.Version))
	if len(p.Steps) == 0 {
		fmt.Fprintln(r.out, "no tasks: the version would be recorded")
		return nil
	}
	tw := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tTASK\tKIND\tACTION\tREASON")
	for i, s := range p.Steps {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, s.Task, s.Kind, strings.ToUpper(s.Action), escape.Text(s.Reason))
	}
	return tw.Flush()
}
