package main

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// sizeResult is the size half of figure 4: the stripped binary, its sections, and what each package
// and module adds (symbol sizes from go tool nm on an unstripped build of the same source).
type sizeResult struct {
	stripped int64
	sections []section     // of the stripped binary, in file order
	packages []contributor // biggest first
	modules  []contributor // biggest first
	symbols  int64         // all symbol bytes counted
}

type section struct {
	name string
	size int64
}

type contributor struct {
	name  string
	bytes int64
}

// measureSize reads the stripped binary's size and sections, and attributes the unstripped binary's
// symbols (text, read-only data, data; not bss, which takes no room in the file) to packages and modules.
func measureSize(root, stripped, unstripped string) (*sizeResult, error) {
	st, err := os.Stat(stripped)
	if err != nil {
		return nil, err
	}
	res := &sizeResult{stripped: st.Size()}
	f, err := elf.Open(stripped)
	if err != nil {
		return nil, err
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Size > 0 && s.Name != "" {
			res.sections = append(res.sections, section{s.Name, int64(s.Size)})
		}
	}
	f.Close()

	uf, err := elf.Open(unstripped)
	if err != nil {
		return nil, err
	}
	defer uf.Close()
	var nobits [][2]uint64
	for _, s := range uf.Sections {
		if s.Type == elf.SHT_NOBITS {
			nobits = append(nobits, [2]uint64{s.Addr, s.Addr + s.Size})
		}
	}
	inBSS := func(addr uint64) bool {
		for _, r := range nobits {
			if addr >= r[0] && addr < r[1] {
				return true
			}
		}
		return false
	}
	out, err := exec.Command("go", "tool", "nm", "-size", "-sort", "size", unstripped).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool nm: %w", err)
	}
	modOf, err := packageModules(root)
	if err != nil {
		return nil, err
	}
	byPkg, byMod := map[string]int64{}, map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "  4d9f40       1669 T reflect.(*rtype).Method"
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[2] == "U" {
			continue
		}
		addr, err1 := strconv.ParseUint(fields[0], 16, 64)
		size, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil || size == 0 || inBSS(addr) {
			continue
		}
		pkg := symbolPackage(strings.Join(fields[3:], " "))
		byPkg[pkg] += size
		mod, ok := modOf[pkg]
		if !ok {
			mod = "(linker and compiler metadata)"
		}
		byMod[mod] += size
		res.symbols += size
	}
	res.packages, res.modules = ranked(byPkg), ranked(byMod)
	return res, sc.Err()
}

func ranked(m map[string]int64) []contributor {
	var cs []contributor
	for name, n := range m {
		cs = append(cs, contributor{name, n})
	}
	slices.SortFunc(cs, func(a, b contributor) int { return cmp.Or(cmp.Compare(b.bytes, a.bytes), cmp.Compare(a.name, b.name)) })
	return cs
}

// symbolPackage returns the import path of the package a symbol belongs to: "github.com/x/y.(*T).M"
// is github.com/x/y; itabs and type helpers count for the package of their (first) type; Go's own
// metadata symbols ("go:func.*", "go:string.*") are grouped apart.
func symbolPackage(name string) string {
	for _, p := range []string{"go:itab.", "type:.eq.", "type:.hash.", "type:.namedata.", "type:.importpath.", "type:"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			name = rest
			break
		}
	}
	if strings.HasPrefix(name, "go:") {
		return "(Go metadata " + name + ")"
	}
	name = strings.TrimLeft(name, "*")
	if i := strings.IndexAny(name, "[,"); i >= 0 {
		name = name[:i]
	}
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	if name == "" || dot < 0 {
		return "(compiler-generated)"
	}
	return name[:slash+1+dot]
}

// packageModules maps every package linked into the gate to its module ("std" for the standard library).
func packageModules(root string) (map[string]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}\t{{if .Standard}}std (Go standard library){{else}}{{with .Module}}{{.Path}}{{end}}{{end}}", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps: %w", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, mod, _ := strings.Cut(line, "\t")
		if pkg == "github.com/peerdb-maintenance/peerdb-maintenance" {
			m["main"] = mod
		}
		m[pkg] = mod
	}
	return m, nil
}
