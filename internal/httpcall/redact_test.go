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

func TestLiteralValuesOfCredentialHeadersAreRedactedOthersAreNot(t *testing.T) {
	hs := Headers{
		Literal("Authorization", "headers.Authorization", "Bearer lit-bearer-tok"),
		Literal("Proxy-Authorization", "headers.Proxy-Authorization", "Basic cHJveHk6cHc="),
		Literal("Cookie", "headers.Cookie", "session=lit-cookie-val"),
		Literal("X-API-Key", "headers.X-API-Key", "lit-api-key"),
		Literal("X-Apikey", "headers.X-Apikey", "lit-apikey"),
		Literal("X-Secret", "headers.X-Secret", "lit-secret-val"),
		Literal("X-Db-Password", "headers.X-Db-Password", "lit-password"),
		Literal("X-Auth-Token", "headers.X-Auth-Token", "lit-auth-token-${TO_VERSION}"),
		Literal("X-Fencing-Token", "headers.X-Fencing-Token", "${FENCING_TOKEN}"), // nothing from the task file
		Literal("Content-Type", "headers.Content-Type", "application/json"),
		Literal("Accept", "headers.Accept", "text/plain"),
	}
	r := New(hs, time.Second, false, "http://flow-api:8113")
	_, secrets, err := hs.build(strings.NewReplacer("${TO_VERSION}", "0.30.0", "${FENCING_TOKEN}", "123456"))
	if err != nil {
		t.Fatal(err)
	}
	r.learn(secrets) // as Do does before each request
	echo := "Authorization: Bearer lit-bearer-tok; token alone: lit-bearer-tok; Proxy-Authorization: Basic cHJveHk6cHc=; " +
		"Cookie: session=lit-cookie-val; lit-api-key lit-apikey lit-secret-val lit-password lit-auth-token-0.30.0; " +
		"fence 123456; Content-Type: application/json; Accept: text/plain"
	got := r.Redact(echo)
	for _, v := range []string{"lit-", "cHJveHk6cHc="} {
		if strings.Contains(got, v) {
			t.Errorf("a literal credential is shown (%s): %s", v, got)
		}
	}
	for _, v := range []string{"Authorization: ***;", "token alone: ***;", "fence 123456", "application/json", "text/plain"} {
		if !strings.Contains(got, v) {
			t.Errorf("want %q in %s", v, got)
		}
	}
}
