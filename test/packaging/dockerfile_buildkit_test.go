package packaging_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dockerfile is a Dockerfile as BuildKit reads it: the ARGs before the first FROM and the stages.
type dockerfile struct {
	metaArgs []instructions.ArgCommand
	stages   []instructions.Stage
}

// parseDockerfile parses data with BuildKit's parser, failing on any parser warning or build check
// BuildKit would report.
func parseDockerfile(data []byte) (dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return dockerfile{}, err
	}
	var problems []string
	for _, w := range res.Warnings {
		problems = append(problems, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		problems = append(problems, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return dockerfile{}, err
	}
	if len(problems) > 0 {
		return dockerfile{}, fmt.Errorf("BuildKit warns: %s", strings.Join(problems, "; "))
	}
	if len(stages) == 0 {
		return dockerfile{}, fmt.Errorf("no FROM")
	}
	return dockerfile{metaArgs: metaArgs, stages: stages}, nil
}

// repoDockerfile returns the repository's Dockerfile, parsed.
func repoDockerfile(t testing.TB) dockerfile {
	t.Helper()
	d, err := parseDockerfile(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
}

// metaArg returns the default of an ARG declared before the first FROM.
func (d dockerfile) metaArg(name string) (string, bool) {
	for _, a := range d.metaArgs {
		for _, kv := range a.Args {
			if kv.Key == name && kv.Value != nil {
				return *kv.Value, true
			}
		}
	}
	return "", false
}

// goBuild is one go build command: its environment assignments, its flags (without -o), its output
// and its package.
type goBuild struct {
	Env     map[string]string
	Flags   []string
	Output  string
	Package string
}

// goBuildRun returns the stage's RUN that runs go build, with its words as the shell sees them after
// BuildKit expands the stage's ARGs, those in buildArgs overriding their defaults. ARGs without a
// value in either are empty, as TARGETOS and TARGETARCH are in a build for the build platform.
func (d dockerfile) goBuildRun(buildArgs map[string]string) (goBuild, error) {
	for _, st := range d.stages {
		var env []string
		for _, cmd := range st.Commands {
			switch c := cmd.(type) {
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					v, ok := buildArgs[kv.Key]
					if !ok {
						v = kv.ValueString()
					}
					env = append(env, kv.Key+"="+v)
				}
			case *instructions.RunCommand:
				if len(c.CmdLine) != 1 || !c.PrependShell || !strings.Contains(c.CmdLine[0], "go build") {
					continue
				}
				words, err := shell.NewLex('\\').ProcessWords(c.CmdLine[0], shell.EnvsFromSlice(env))
				if err != nil {
					return goBuild{}, err
				}
				return parseGoBuild(words)
			}
		}
	}
	return goBuild{}, fmt.Errorf("the Dockerfile has no RUN with go build")
}

// parseGoBuild reads the words of "[VAR=value...] go build flags... -o out pkg".
func parseGoBuild(words []string) (goBuild, error) {
	b := goBuild{Env: map[string]string{}}
	i := 0
	for ; i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-"); i++ {
		k, v, _ := strings.Cut(words[i], "=")
		b.Env[k] = v
	}
	if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", words)
	}
	rest := words[i+2:]
	for j := 0; j < len(rest); j++ {
		switch w := rest[j]; {
		case w == "-o" && j+1 < len(rest):
			j++
			b.Output = rest[j]
		case j == len(rest)-1 && !strings.HasPrefix(w, "-"):
			b.Package = w
		default:
			b.Flags = append(b.Flags, w)
		}
	}
	return b, nil
}

func TestDockerfileParserCatchesMistakes(t *testing.T) {
	for name, data := range map[string]string{
		"unknown instruction": "FROM scratch\nCOPPY a /a\n",
		"no FROM":             "ARG A=1\n",
		"bad flag":            "FROM scratch\nCOPY --form=build /a /a\n",
		"empty continuation":  "FROM scratch\nRUN a \\\n\n  b\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseDockerfile([]byte(data)); err == nil {
				t.Errorf("parsed without error:\n%s", data)
			}
		})
	}
	d, err := parseDockerfile([]byte("ARG V=1\nFROM scratch\nARG W\nRUN X=\"${W}\" go build -ldflags \"-s -w\" -o /o .\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.goBuildRun(map[string]string{"W": "a b"})
	if err != nil || b.Env["X"] != "a b" || !slices.Equal(b.Flags, []string{"-ldflags", "-s -w"}) || b.Output != "/o" || b.Package != "." {
		t.Errorf("go build %+v, %v", b, err)
	}
}
