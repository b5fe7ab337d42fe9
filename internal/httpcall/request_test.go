package httpcall

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHTTPSToHTTPRedirectOnTheSameHostIsRefusedOrLosesTheSecrets(t *testing.T) {
	for _, follow := range []bool{false, true} {
		r := New(Headers{FromEnv("X-Api-Key", "headers.X-Api-Key", "", "s3cret")}, time.Second, follow, "https://hooks.example/x")
		first, _ := http.NewRequest("GET", "https://hooks.example/x", nil)
		next, _ := http.NewRequest("GET", "http://hooks.example/y", nil)
		next.Header.Set("X-Api-Key", "s3cret")
		err := r.checkRedirect(next, []*http.Request{first})
		switch {
		case !follow && (err == nil || !strings.Contains(err.Error(), "from https to http")):
			t.Errorf("an https -> http redirect is not refused: %v", err)
		case follow && (err != nil || next.Header.Get("X-Api-Key") != ""):
			t.Errorf("follow_redirects: an https -> http redirect is followed with the secret header (%v)", err)
		}
	}
}
