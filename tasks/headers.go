package tasks

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/httpcall"
)

// The headers mapping of the http and peerdb kinds, decoded into httpcall.Headers.

var headerNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") })

type headerSourceFields struct {
	Env    string `yaml:"env"`
	File   string `yaml:"file"`
	Prefix string `yaml:"prefix"`
}

// decodeHeaders reads a headers mapping: each value is a string, {env: NAME} or {file: PATH}, with an
// optional prefix ({env: TOKEN, prefix: "Bearer "}).
func decodeHeaders(nodes map[string]yaml.Node, lc LoadContext) (httpcall.Headers, []error) {
	names := make([]string, 0, len(nodes))
	for name := range nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	var hs httpcall.Headers
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
			hs = append(hs, httpcall.Literal(name, field, node.Value))
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

func decodeHeaderSource(node *yaml.Node, name, field string, lc LoadContext) (httpcall.Header, error) {
	var f headerSourceFields
	if err := DecodeStrict(node, &f); err != nil {
		// Each problem keeps its own field and position (headers.X.prefx at its line and column).
		var errs []error
		for _, fe := range underField(field, err) {
			errs = append(errs, fe)
		}
		return httpcall.Header{}, errors.Join(errs...)
	}
	if strings.ContainsAny(f.Prefix, "\r\n") {
		return httpcall.Header{}, Fieldf(field+".prefix", "a header value cannot hold a line break")
	}
	switch {
	case f.Env != "" && f.File != "":
		return httpcall.Header{}, Fieldf(field, "env and file: give one")
	case f.File != "":
		if _, err := httpcall.ReadHeaderFile(f.File); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = fmt.Errorf("%s: %w", pe.Path, pe.Err)
			}
			return httpcall.Header{}, Fieldf(field+".file", "%s", err)
		}
		return httpcall.FromFile(name, field, f.Prefix, f.File), nil
	case f.Env != "":
		v := lc.getenv(f.Env)
		if v == "" {
			return httpcall.Header{}, Fieldf(field+".env", "environment variable %s is empty or not set", f.Env)
		}
		if strings.ContainsAny(v, "\r\n") {
			return httpcall.Header{}, Fieldf(field+".env", "environment variable %s holds a line break", f.Env)
		}
		return httpcall.FromEnv(name, field, f.Prefix, v), nil
	}
	return httpcall.Header{}, Fieldf(field+".env", "required: the environment variable holding the value (or file: the file holding it)")
}
