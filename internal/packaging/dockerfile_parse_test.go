package packaging_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY...
	Args string
	Line int
}

// parseDockerfile splits a Dockerfile into instructions. Comments and parser directives are dropped.
func parseDockerfile(data []byte) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`))
		if cont {
			cur.WriteString(" ")
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	return out
}

// shellWords splits a shell command line into words, honouring single and double quotes and
// backslashes. Variables are left as written.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote in %q", s)
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`, s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// goBuild is one go build command: its environment assignments, its flags (without -o), its output
// and its package.
type goBuild struct {
	Env     map[string]string
	Flags   []string
	Output  string
	Package string
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// parseGoBuild reads "[--mount=...] [VAR=value...] go build flags... -o out pkg", expanding variables
// with vars (Dockerfile ${VAR} and Makefile $(VAR) both).
func parseGoBuild(line string, vars map[string]string) (goBuild, error) {
	words, err := shellWords(line)
	if err != nil {
		return goBuild{}, err
	}
	b := goBuild{Env: map[string]string{}}
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i], "--"); i++ { // RUN flags: --mount=...
	}
	for ; i < len(words) && assignment.MatchString(words[i]); i++ {
		k, v, _ := strings.Cut(words[i], "=")
		b.Env[k] = expand(v, vars)
	}
	if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", line)
	}
	rest := words[i+2:]
	for j := 0; j < len(rest); j++ {
		switch w := expand(rest[j], vars); {
		case w == "-o" && j+1 < len(rest):
			j++
			b.Output = expand(rest[j], vars)
		case j == len(rest)-1 && !strings.HasPrefix(w, "-"):
			b.Package = w
		default:
			b.Flags = append(b.Flags, w)
		}
	}
	return b, nil
}

var makeVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces ${VAR}, $VAR and $(VAR) with their values in vars; unknown variables are an empty
// string, as in both the shell and make.
func expand(s string, vars map[string]string) string {
	for range 10 { // make variables may refer to others
		next := makeVar.ReplaceAllStringFunc(s, func(m string) string { return vars[m[2:len(m)-1]] })
		if next == s {
			break
		}
		s = next
	}
	return os.Expand(s, func(k string) string { return vars[k] })
}

// dockerfileBuild returns the go build of the Dockerfile, with build arguments from args.
func dockerfileBuild(data []byte, args map[string]string) (goBuild, error) {
	for _, in := range parseDockerfile(data) {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			return parseGoBuild(in.Args, args)
		}
	}
	return goBuild{}, fmt.Errorf("the Dockerfile has no RUN with go build")
}

// makefileBuild returns the go build of the Makefile's build target. Variables assigned in the Makefile
// are used, except those in overrides (as on the make command line).
func makefileBuild(data []byte, overrides map[string]string) (goBuild, error) {
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*[:?]?=\s*(.*)$`)
	lines := strings.Split(string(data), "\n")
	recipe := ""
	for i, line := range lines {
		if m := assign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
		if strings.HasPrefix(line, "build:") && i+1 < len(lines) {
			recipe = strings.TrimSpace(lines[i+1])
		}
	}
	if recipe == "" {
		return goBuild{}, fmt.Errorf("the Makefile has no build target")
	}
	for k, v := range overrides {
		vars[k] = v
	}
	return parseGoBuild(recipe, vars)
}
