package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The shipped binary links none of the helpers only tests use: no package of internal/testkit or test/,
// and not the standard library's testing packages, which would come with one.
func TestTheBinaryLinksNoTestKit(t *testing.T) {
	const module = "github.com/peerdb-maintenance/peerdb-maintenance"
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != module {
		t.Fatalf("go list -deps does not end with the main package %s: %q", module, deps)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, module+"/internal/testkit/") || strings.HasPrefix(p, module+"/test/") ||
			p == "testing" || strings.HasPrefix(p, "testing/") || p == "net/http/httptest" {
			t.Errorf("the binary links %s, a package only tests may use", p)
		}
	}
}
