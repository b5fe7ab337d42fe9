package main

import (
	"strings"
	"testing"
)

func TestVersionPrintsVersionCommitAndGo(t *testing.T) {
	version, commit = "1.2.3", "abc1234"
	defer func() { version, commit = "", "" }()
	code, out, _ := runIn(t, nil, "version")
	if code != 0 || !strings.Contains(out, "1.2.3") || !strings.Contains(out, "abc1234") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}
