package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
)

// headerSet is the headers of a request of the http and peerdb kinds. Values read from the environment
// or from a file are secrets: headerSet prints names only, and its values never reach a log line or an
// error.
type headerSet []headerField

type headerField struct {
	name   string
	value  string // a literal (placeholders expanded), or the prefix and the environment variable's value
	file   string // read before every request, the prefix put in front
	field  string // where it was configured, e.g. headers.Authorization
	prefix string // goes in front of a file's content
	bare   string // an environment variable's value, without the prefix
	secret bool   // from the environment or a file: used as is, never expanded, never shown
}

// String lists the header names, never their values.
func (hs headerSet) String() string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.name
	}
	return strings.Join(names, ", ")
}

// LogValue keeps header values out of logs even when a headerSet is logged by mistake.
func (hs headerSet) LogValue() slog.Value { return slog.StringValue(hs.String()) }

// secretNames returns the names of the headers whose values are secrets.
func (hs headerSet) secretNames() []string {
	var out []string
	for _, h := range hs {
		if h.secret {
			out = append(out, h.name)
		}
	}
	return out
}

// hasFiles reports whether a header is read from a file, so that a 401 may come from a token that
// changed since it was read.
func (hs headerSet) hasFiles() bool {
	for _, h := range hs {
		if h.file != "" {
			return true
		}
	}
	return false
}

// build returns the headers of one request, reading header files anew, and the secret values used.
func (hs headerSet) build(expand *strings.Replacer) (http.Header, []string, error) {
	h := http.Header{}
	var secrets []string
	for _, f := range hs {
		v := f.value
		switch {
		case f.file != "":
			content, err := readHeaderFile(f.file)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f.field, err)
			}
			v = f.prefix + content
			secrets = append(secrets, content, v)
		case f.secret:
			secrets = append(secrets, f.bare, v)
		default:
			v = expand.Replace(v)
		}
		h.Set(f.name, v)
	}
	return h, secrets, nil
}

// maxHeaderFile bounds what a header file may hold: a token, not a mount of something else.
const maxHeaderFile = 64 << 10

// readHeaderFile reads a header value from a file, as Kubernetes mounts a Secret or a projected
// service account token: one line, trailing whitespace dropped. safefile opens it without blocking and
// refuses anything but a regular file (a FIFO would block an ordinary open).
func readHeaderFile(path string) (string, error) {
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

var headerNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") })

type headerSourceFields struct {
	Env    string `yaml:"env"`
	File   string `yaml:"file"`
	Prefix string `yaml:"prefix"`
}

// decodeHeaders reads a headers mapping: each value is a string, {env: NAME} or {file: PATH}, with an
// optional prefix ({env: TOKEN, prefix: "Bearer "}).
func decodeHeaders(nodes map[string]yaml.Node, lc LoadContext) (headerSet, []error) {
	names := make([]string, 0, len(nodes))
	for name := range nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	var hs headerSet
	var errs []error
	for _, name := range names {
		node := nodes[name]
		field := "headers." + name
		if !headerNameRe().MatchString(name) {
			errs = append(errs, Fieldf(field, "not a valid header name"))
			continue
		}
		switch node.Kind {
		case yaml.ScalarNode:
			if strings.ContainsAny(node.Value, "\r\n") {
				errs = append(errs, Fieldf(field, "a header value cannot hold a line break"))
			} else if err := checkPlaceholders(node.Value); err != nil {
				errs = append(errs, Fieldf(field, "%s", err))
			}
			hs = append(hs, headerField{name: name, value: node.Value, field: field})
		case yaml.MappingNode:
			h, err := decodeHeaderSource(&node, name, field, lc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			hs = append(hs, h)
		default:
			errs = append(errs, Fieldf(field, "expected a string, {env: NAME} or {file: PATH}"))
		}
	}
	return hs, errs
}

func decodeHeaderSource(node *yaml.Node, name, field string, lc LoadContext) (headerField, error) {
	var f headerSourceFields
	if err := DecodeStrict(node, &f); err != nil {
		// Each problem keeps its own field and position (headers.X.prefx at its line and column).
		var errs []error
		for _, fe := range underField(field, err) {
			errs = append(errs, fe)
		}
		return headerField{}, errors.Join(errs...)
	}
	if strings.ContainsAny(f.Prefix, "\r\n") {
		return headerField{}, Fieldf(field+".prefix", "a header value cannot hold a line break")
	}
	h := headerField{name: name, field: field, prefix: f.Prefix, secret: true}
	switch {
	case f.Env != "" && f.File != "":
		return h, Fieldf(field, "env and file: give one")
	case f.File != "":
		if _, err := readHeaderFile(f.File); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = fmt.Errorf("%s: %w", pe.Path, pe.Err)
			}
			return h, Fieldf(field+".file", "%s", err)
		}
		h.file = f.File
		return h, nil
	case f.Env != "":
		v := lc.getenv(f.Env)
		if v == "" {
			return h, Fieldf(field+".env", "environment variable %s is empty or not set", f.Env)
		}
		if strings.ContainsAny(v, "\r\n") {
			return h, Fieldf(field+".env", "environment variable %s holds a line break", f.Env)
		}
		h.value, h.bare = f.Prefix+v, v
		return h, nil
	}
	return h, Fieldf(field+".env", "required: the environment variable holding the value (or file: the file holding it)")
}
