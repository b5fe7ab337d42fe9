package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// whatIf is the stripped size of the gate built without one thing, to show what that thing costs.
// The source tree is never changed: files are left out or replaced with go build -overlay.
type whatIf struct {
	what string
	size int64  // 0 when it could not be built
	note string // why it could not be built
}

func measureWhatIfs(ctx context.Context, root, dir string) []whatIf {
	type variant struct {
		what  string
		flags func() ([]string, error)
	}
	overlay := func(name string, replace map[string]string) ([]string, error) {
		b, _ := json.Marshal(map[string]any{"Replace": replace})
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return nil, err
		}
		return []string{"-overlay", path}, nil
	}
	variants := []variant{
		{"net/http without HTTP/2 (build tag `nethttpomithttp2`)", func() ([]string, error) {
			return []string{"-tags", "nethttpomithttp2"}, nil
		}},
		{"without the `sql` task kind (tasks/sql.go left out)", func() ([]string, error) {
			return overlay("nosql", map[string]string{filepath.Join(root, "tasks", "sql.go"): ""})
		}},
		{"without Redis Cluster support (no `redis.NewClusterClient`)", func() ([]string, error) {
			path := filepath.Join(root, "internal", "redisconn", "redisconn.go")
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			if !strings.Contains(string(src), "redis.NewClusterClient(") {
				return nil, fmt.Errorf("internal/redisconn/redisconn.go no longer calls redis.NewClusterClient")
			}
			stub := strings.ReplaceAll(string(src), "redis.NewClusterClient(", "benchNoCluster(") +
				"\nfunc benchNoCluster(*redis.ClusterOptions) redis.UniversalClient { panic(\"built without cluster support\") }\n"
			replacement := filepath.Join(dir, "redisconn-nocluster.go")
			if err := os.WriteFile(replacement, []byte(stub), 0o644); err != nil {
				return nil, err
			}
			return overlay("nocluster", map[string]string{path: replacement})
		}},
	}
	var out []whatIf
	for i, v := range variants {
		w := whatIf{what: v.what}
		flags, err := v.flags()
		if err == nil {
			bin := filepath.Join(dir, fmt.Sprintf("whatif-%d", i))
			if err = build(ctx, root, bin, "-s -w", ".", flags...); err == nil {
				if st, serr := os.Stat(bin); serr == nil {
					w.size = st.Size()
				}
			}
		}
		if err != nil {
			w.note = buildProblem(err.Error())
		}
		out = append(out, w)
	}
	return out
}

// buildProblem is the first line of a failed build's output that says what is wrong.
func buildProblem(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "go build ") {
			return line
		}
	}
	return strings.TrimSpace(s)
}
