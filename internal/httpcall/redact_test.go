package httpcall

import (
	"strings"
	"testing"
	"time"
)

func TestSecretsShorterThanFourCharactersAreNotRedacted(t *testing.T) {
	r := New(nil, time.Second, false, "http://u:pw@flow-api:8113")
	r.learn([]string{"tok", "long-s3cret"})
	if got := r.Redact("stat /run/token: long-s3cret pw"); got != "stat /run/token: *** pw" {
		t.Errorf("redacted %q", got)
	}
}

func TestURLsAreLoggedWithoutPasswordsOrQueryValues(t *testing.T) {
	got := RedactURL("https://user:pw-secret@hooks.example/upgraded?token=tok-secret&v=1")
	if strings.Contains(got, "pw-secret") || strings.Contains(got, "tok-secret") || !strings.Contains(got, "token=") {
		t.Errorf("RedactURL = %q: want the password and query values hidden, the names kept", got)
	}
}
