package httpcall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
)

// Headers is the headers of a request of the http and peerdb kinds. Values read from the environment
// or from a file, and literal values of credential-bearing headers (CredentialName), are secrets:
// Headers prints names only, and its values never reach a log line or an error.
type Headers []Header

// Header is one header: a literal value, or a secret from the environment or a file.
type Header struct {
	name   string
	value  string // a literal (placeholders expanded), or the prefix and the environment variable's value
	file   string // read before every request, the prefix put in front
	field  string // where it was configured, e.g. headers.Authorization
	prefix string // goes in front of a file's content
	bare   string // an environment variable's value, without the prefix
	secret bool   // from the environment or a file: used as is, never expanded, never shown
	// credential: a literal value of a credential-bearing header (an Authorization: "Bearer ..." written
	// in the task file): expanded like any literal, but never shown and not sent to another host.
	credential bool
}

// Literal is a header whose value is written in the task file at field; the placeholders in it are
// expanded at each request. The value of a credential-bearing header (CredentialName) is a secret,
// unless it is made of placeholders only (X-Fencing-Token: "${FENCING_TOKEN}" holds nothing secret).
func Literal(name, field, value string) Header {
	credential := CredentialName(name) && strings.TrimSpace(PlaceholderRe().ReplaceAllString(value, "")) != ""
	return Header{name: name, value: value, field: field, credential: credential}
}

// PlaceholderRe finds ${NAME} in a body or header value (the task file loader refuses a name it does not
// expand).
var PlaceholderRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\{([^}]*)\}`) })

// credentialWords are the parts of a header name that say its value is a credential.
var credentialWords = []string{"auth", "token", "secret", "password", "api-key", "apikey", "cookie"}

// CredentialName reports whether a header's value is a credential: Authorization, Proxy-Authorization,
// Cookie, and any header whose name holds auth, token, secret, password, api-key or apikey, in any case.
func CredentialName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// schemeRe splits an authorization value into its scheme and its credentials ("Bearer tok"), so that
// the credentials are hidden also when a server echoes them without the scheme.
var schemeRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._~+-]*[ \t]+(\S.*)$`) })

// FromEnv is a header whose value, prefix followed by value, was read from an environment variable: a
// secret.
func FromEnv(name, field, prefix, value string) Header {
	return Header{name: name, field: field, prefix: prefix, value: prefix + value, bare: value, secret: true}
}

// FromFile is a header whose value is prefix followed by the content of the file at path, read anew
// before every request: a secret.
func FromFile(name, field, prefix, path string) Header {
	return Header{name: name, field: field, prefix: prefix, file: path, secret: true}
}

// String lists the header names, never their values.
func (hs Headers) String() string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.name
	}
	return strings.Join(names, ", ")
}

// LogValue keeps header values out of logs even when a Headers is logged by mistake.
func (hs Headers) LogValue() slog.Value { return slog.StringValue(hs.String()) }

// secretNames returns the names of the headers whose values are secrets.
func (hs Headers) secretNames() []string {
	var out []string
	for _, h := range hs {
		if h.secret || h.credential {
			out = append(out, h.name)
		}
	}
	return out
}

// hasFiles reports whether a header is read from a file, so that a 401 may come from a token that
// changed since it was read.
func (hs Headers) hasFiles() bool {
	for _, h := range hs {
		if h.file != "" {
			return true
		}
	}
	return false
}

// build returns the headers of one request, reading header files anew, and the secret values used.
func (hs Headers) build(expand *strings.Replacer) (http.Header, []string, error) {
	h := http.Header{}
	var secrets []string
	for _, f := range hs {
		v := f.value
		switch {
		case f.file != "":
			content, err := ReadHeaderFile(f.file)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f.field, err)
			}
			v = f.prefix + content
			secrets = append(secrets, content, v)
		case f.secret:
			secrets = append(secrets, f.bare, v)
		default:
			v = expand.Replace(v)
			if f.credential {
				secrets = append(secrets, v)
				if m := schemeRe().FindStringSubmatch(v); m != nil {
					secrets = append(secrets, m[1])
				}
			}
		}
		h.Set(f.name, v)
	}
	return h, secrets, nil
}

// maxHeaderFile bounds what a header file may hold: a token, not a mount of something else.
const maxHeaderFile = 64 << 10

// ReadHeaderFile reads a header value from a file, as Kubernetes mounts a Secret or a projected
// service account token: one line, trailing whitespace dropped. safefile opens it without blocking and
// refuses anything but a regular file (a FIFO would block an ordinary open).
func ReadHeaderFile(path string) (string, error) {
	data, err := safefile.ReadFile(context.Background(), path, maxHeaderFile)
	if errors.Is(err, safefile.ErrTooLarge) {
		return "", fmt.Errorf("%s holds more than %d KiB", path, maxHeaderFile>>10)
	}
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(data), " \t\r\n")
	switch {
	case v == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(v, "\r\n"):
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return v, nil
}
