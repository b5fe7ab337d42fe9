// Package redisconn turns the gate's Redis settings into a go-redis client, using go-redis's own URL
// parsers, and keeps passwords out of everything it prints.
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Modes are the accepted values of REDIS_MODE.
var Modes = []string{"auto", "standalone", "sentinel", "cluster"}

// Settings are the Redis-related configuration values.
type Settings struct {
	URL      string
	Mode     string
	CAFile   string
	CertFile string
	KeyFile  string
}

// SettingError names the variable whose value could not be used.
type SettingError struct {
	Var     string
	Problem string
}

func (e *SettingError) Error() string { return e.Var + ": " + e.Problem }

// Target is a parsed, ready-to-dial Redis destination.
type Target struct {
	// Mode is the resolved mode: standalone, sentinel or cluster.
	Mode       string
	standalone *redis.Options
	failover   *redis.FailoverOptions
	cluster    *redis.ClusterOptions
	redacted   string
}

// Parse validates the settings and builds a Target. Errors are *SettingError values and never contain
// the password.
func Parse(s Settings) (*Target, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, &SettingError{Var: "REDIS_URL", Problem: "not a valid URL: " + err.Error()}
	}
	t := &Target{Mode: s.Mode, redacted: Redact(s.URL)}
	q := u.Query()
	if t.Mode == "" || t.Mode == "auto" {
		switch {
		case q.Get("master_name") != "":
			t.Mode = "sentinel"
		default:
			t.Mode = "standalone"
		}
	}
	switch t.Mode {
	case "standalone":
		t.standalone, err = redis.ParseURL(s.URL)
	case "sentinel":
		if q.Get("master_name") == "" {
			return nil, &SettingError{Var: "REDIS_URL", Problem: "sentinel mode needs ?master_name= in the URL"}
		}
		t.failover, err = redis.ParseFailoverURL(s.URL)
	case "cluster":
		t.cluster, err = redis.ParseClusterURL(s.URL)
	default:
		return nil, &SettingError{Var: "REDIS_MODE", Problem: fmt.Sprintf("%q is not one of %s", s.Mode, strings.Join(Modes, ", "))}
	}
	if err != nil {
		return nil, &SettingError{Var: "REDIS_URL", Problem: scrub(err.Error(), u)}
	}
	tlsCfg, err := t.tlsConfig(s)
	if err != nil {
		return nil, err
	}
	t.apply(tlsCfg)
	return t, nil
}

func (t *Target) tlsConfig(s Settings) (*tls.Config, error) {
	var cfg *tls.Config
	switch {
	case t.standalone != nil:
		cfg = t.standalone.TLSConfig
	case t.failover != nil:
		cfg = t.failover.TLSConfig
	case t.cluster != nil:
		cfg = t.cluster.TLSConfig
	}
	if s.CAFile == "" && s.CertFile == "" && s.KeyFile == "" {
		return cfg, nil
	}
	if cfg == nil {
		v := "REDIS_CA_FILE"
		if s.CAFile == "" {
			v = "REDIS_CERT_FILE"
		}
		return nil, &SettingError{Var: v, Problem: "set, but REDIS_URL is not a rediss:// URL"}
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, &SettingError{Var: "REDIS_CA_FILE", Problem: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &SettingError{Var: "REDIS_CA_FILE", Problem: fmt.Sprintf("no PEM certificate found in %s", s.CAFile)}
		}
		cfg.RootCAs = pool
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v := "REDIS_KEY_FILE"
		if s.CertFile == "" {
			v = "REDIS_CERT_FILE"
		}
		return nil, &SettingError{Var: v, Problem: "REDIS_CERT_FILE and REDIS_KEY_FILE must be set together"}
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, &SettingError{Var: "REDIS_CERT_FILE", Problem: "load client certificate and key: " + err.Error()}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// apply sets the options every gate connection shares: RESP2 and no CLIENT SETINFO, so that a new
// connection costs one HELLO round trip and nothing else.
func (t *Target) apply(cfg *tls.Config) {
	switch {
	case t.standalone != nil:
		t.standalone.TLSConfig = cfg
		t.standalone.Protocol = 2
		t.standalone.DisableIdentity = true
	case t.failover != nil:
		t.failover.TLSConfig = cfg
		t.failover.Protocol = 2
		t.failover.DisableIdentity = true
	case t.cluster != nil:
		t.cluster.TLSConfig = cfg
		t.cluster.Protocol = 2
		t.cluster.DisableIdentity = true
	}
}

// String returns the URL with its password redacted.
func (t *Target) String() string { return t.redacted }

// NewClient returns a client for the target. Dial and read timeouts bound every single command so that
// a stalled server shows up as an error rather than a hang.
func (t *Target) NewClient() redis.UniversalClient {
	switch {
	case t.failover != nil:
		o := *t.failover
		return redis.NewFailoverClient(&o)
	case t.cluster != nil:
		o := *t.cluster
		return redis.NewClusterClient(&o)
	default:
		o := *t.standalone
		return redis.NewClient(&o)
	}
}

// Redact returns the URL with every password (user info and password query parameters) replaced.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	q := u.Query()
	changed := false
	for _, k := range []string{"password", "sentinel_password"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// scrub removes the URL's password from a parser message, in case a parser quotes what it read.
func scrub(msg string, u *url.URL) string {
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	for _, k := range []string{"password", "sentinel_password"} {
		if p := u.Query().Get(k); p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// IsAuthError reports whether err is Redis refusing our credentials or permissions: WRONGPASS, NOAUTH
// or NOPERM. Such errors are not transient and are never retried.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "called without any password configured"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
