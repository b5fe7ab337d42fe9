// Package redisconn turns the gate's Redis settings into a go-redis client, using go-redis's own URL
// parsers, and keeps passwords out of everything it prints.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
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

// Parse validates the settings and builds a Target. Errors are *SettingError values (several joined
// with errors.Join when several TLS files are unusable) and never contain the password.
func Parse(s Settings) (*Target, error) {
	u, err := url.Parse(s.URL)
	if err == nil && misplacedAt(u) {
		err = errors.New("'@' outside the user info")
	}
	if err != nil {
		return nil, &SettingError{Var: "REDIS_URL", Problem: urlProblem(s.URL, err)}
	}
	t := &Target{Mode: s.Mode, redacted: Redact(s.URL)}
	q := u.Query()
	// go-redis's standalone parser ignores a skip_verify it cannot read instead of refusing it.
	for _, v := range q["skip_verify"] {
		if !slices.Contains([]string{"", "true", "false", "1", "0"}, v) {
			return nil, &SettingError{Var: "REDIS_URL", Problem: fmt.Sprintf("skip_verify=%q is not true or false", v)}
		}
	}
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
	if err := t.checkPorts(); err != nil {
		return nil, &SettingError{Var: "REDIS_URL", Problem: err.Error()}
	}
	tlsCfg, err := t.tlsConfig(s)
	if err != nil {
		return nil, err
	}
	t.apply(tlsCfg)
	return t, nil
}

// checkPorts refuses a port no server can listen on (0, 99999): the parsers accept any number, and
// the gate would then retry the dial until MAINTENANCE_CONNECT_TIMEOUT and report Redis unreachable.
func (t *Target) checkPorts() error {
	var addrs []string
	switch {
	case t.standalone != nil && t.standalone.Network != "unix":
		addrs = []string{t.standalone.Addr}
	case t.failover != nil:
		addrs = t.failover.SentinelAddrs
	case t.cluster != nil:
		addrs = t.cluster.Addrs
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("address %q: %v", a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q of %s is not a number from 1 to 65535", port, host)
		}
	}
	return nil
}

// tlsConfig applies the TLS files to the URL's TLS settings. It reports every unusable file at once,
// as SettingErrors joined with errors.Join.
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
	files := []struct{ v, path string }{{"REDIS_CA_FILE", s.CAFile}, {"REDIS_CERT_FILE", s.CertFile}, {"REDIS_KEY_FILE", s.KeyFile}}
	var errs []error
	if cfg == nil {
		for _, f := range files {
			if f.path != "" {
				errs = append(errs, &SettingError{Var: f.v, Problem: "set, but REDIS_URL is not a rediss:// URL"})
			}
		}
		return cfg, errors.Join(errs...)
	}
	if s.CAFile != "" {
		pem, err := readBounded(s.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			errs = append(errs, &SettingError{Var: "REDIS_CA_FILE", Problem: err.Error()})
		case !pool.AppendCertsFromPEM(pem):
			errs = append(errs, &SettingError{Var: "REDIS_CA_FILE", Problem: fmt.Sprintf("no PEM certificate found in %s", s.CAFile)})
		default:
			cfg.RootCAs = pool
		}
	}
	switch {
	case (s.CertFile == "") != (s.KeyFile == ""):
		v := "REDIS_KEY_FILE"
		if s.CertFile == "" {
			v = "REDIS_CERT_FILE"
		}
		errs = append(errs, &SettingError{Var: v, Problem: "REDIS_CERT_FILE and REDIS_KEY_FILE must be set together"})
	case s.CertFile != "":
		cert, err := loadKeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			errs = append(errs, &SettingError{Var: "REDIS_CERT_FILE", Problem: "load client certificate and key (REDIS_KEY_FILE): " + err.Error()})
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// loadKeyPair is tls.LoadX509KeyPair, reading both files as readBounded does.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := readBounded(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readBounded(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}

// maxPEMFile bounds what is read of REDIS_CA_FILE: a CA bundle is a few hundred KiB, and a wrong path
// (/dev/zero, a log) must not take the gate's memory.
const maxPEMFile = 4 << 20

func readBounded(path string) ([]byte, error) {
	data, err := safefile.ReadFile(context.Background(), path, maxPEMFile)
	if errors.Is(err, safefile.ErrTooLarge) {
		err = fmt.Errorf("%s is larger than %d MiB: not a PEM bundle", path, maxPEMFile>>20)
	}
	return data, err
}

// apply sets the options every gate connection shares: RESP2 and no CLIENT SETINFO, so that a new
// connection costs one HELLO round trip and nothing else; one dial per attempt, because the gate's
// own connect loop does the waiting for a Redis that is not up yet; and context deadlines that bound
// socket reads and writes: without ContextTimeoutEnabled go-redis ignores them and a stalled network
// blocks every command for its read timeout (3s, then retries), so that the keeper learned of a lost
// lock only after a short TTL had run out.
//
// Pipelines share the command pool (go-redis v9.17 has no separate pipeline pool; later versions add
// one, which would cost a waiter a second connection, its HELLO and 256 KiB of buffers).
func (t *Target) apply(cfg *tls.Config) {
	switch {
	case t.standalone != nil:
		t.standalone.TLSConfig = cfg
		t.standalone.Protocol = 2
		t.standalone.DisableIdentity = true
		t.standalone.DialerRetries = 1
		t.standalone.ContextTimeoutEnabled = true
	case t.failover != nil:
		t.failover.TLSConfig = cfg
		t.failover.Protocol = 2
		t.failover.DisableIdentity = true
		t.failover.DialerRetries = 1
		t.failover.ContextTimeoutEnabled = true
	case t.cluster != nil:
		t.cluster.TLSConfig = cfg
		t.cluster.Protocol = 2
		t.cluster.DisableIdentity = true
		t.cluster.DialerRetries = 1
		t.cluster.ContextTimeoutEnabled = true
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
		return withRecover(redis.NewFailoverClient(&o))
	case t.cluster != nil:
		o := *t.cluster
		return withRecover(redis.NewClusterClient(&o))
	default:
		o := *t.standalone
		return withRecover(redis.NewClient(&o))
	}
}

// NewWriteClient returns a client for the target that never retries a command on its own. go-redis
// retries a command whose reply timed out or whose connection broke, although the command may have
// run: for a script that writes (the lock, the fencing token, progress, the record) that is a second
// write nobody asked for. Writes go through this client, and the gate decides what to do when their
// outcome is unknown.
func (t *Target) NewWriteClient() redis.UniversalClient {
	switch {
	case t.failover != nil:
		o := *t.failover
		o.MaxRetries = -1
		return withRecover(redis.NewFailoverClient(&o))
	case t.cluster != nil:
		o := *t.cluster
		o.MaxRetries = -1
		return withRecover(redis.NewClusterClient(&o))
	default:
		o := *t.standalone
		o.MaxRetries = -1
		return withRecover(redis.NewClient(&o))
	}
}

// Redact returns the URL with every password (user info and password query parameters) replaced.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if misplacedAt(u) {
		return u.Scheme + "://(user info with unencoded characters)"
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

// misplacedAt reports a URL whose '@' is not where user info ends: a password with an unencoded / ? or
// # splits the URL early, so that part of the password lands in the host, path or fragment.
func misplacedAt(u *url.URL) bool {
	return u.User == nil && strings.ContainsRune(u.Opaque+u.Path+u.Fragment, '@')
}

// urlProblem describes why raw is not a usable URL without quoting anything that may be part of a
// password: when raw has an '@', the parser's message is used only if it comes from raw with
// everything between "://" and its last '@' replaced.
func urlProblem(raw string, err error) string {
	const userinfo = "not a valid URL: the user name or password has characters that must be percent-encoded (/ ? # @ %)"
	if at := strings.LastIndexByte(raw, '@'); at >= 0 {
		sep := strings.Index(raw, "://")
		if sep < 0 || sep > at {
			return userinfo
		}
		_, err = url.Parse(raw[:sep+3] + "xxxxx" + raw[at:])
		if err == nil {
			return userinfo
		}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return "not a valid URL: " + err.Error()
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
// or NOPERM, and an ACL refusal inside a Lua script (which Redis reports as ERR, not NOPERM: "The user
// executing the script can't run this command" up to 7.0, "ACL failure in script" from 7.2). Such
// errors are not transient and are never retried.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "called without any password configured",
		"The user executing the script can't", "ACL failure in script"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// Refusal is the class of a Redis error that no retry can cure.
type Refusal int

const (
	// Transient: anything else (a timeout, a broken connection, a Redis loading its data); may be retried.
	Transient Refusal = iota
	// Unwritable: a Redis that refuses writes, read-only (READONLY: a replica), full (OOM under
	// noeviction, MISCONF after a failed save), or a master without the replicas its
	// min-replicas-to-write asks for (NOREPLICAS).
	Unwritable
	// Refused: a command refused whatever the state of Redis: a key of the wrong type (WRONGTYPE), an
	// unknown, renamed or disabled command, a permission missing (NOPERM), a Redis Cluster node
	// redirecting a client that is not in cluster mode (MOVED, ASK: see IsRedirect), or a Redis without
	// cluster support asked by a client in cluster mode (IsNotACluster).
	Refused
)

// Classify says whether err is a permanent Redis error, and of which class, by the error code Redis
// put first in its reply (also inside a script's error).
func Classify(err error) Refusal {
	msg, ok := serverReply(err)
	if !ok {
		return Transient
	}
	for _, p := range []string{"READONLY", "OOM", "MISCONF", "NOREPLICAS"} {
		if strings.HasPrefix(msg, p+" ") {
			return Unwritable
		}
	}
	if IsRedirect(err) || IsNotACluster(err) {
		return Refused
	}
	for _, p := range []string{"WRONGTYPE ", "NOPERM ", "ERR unknown command", "ERR unknown subcommand", "ERR Unknown command"} {
		if strings.HasPrefix(msg, p) {
			return Refused
		}
	}
	return Transient
}

// serverReply is the text of the Redis error reply in err's chain; ok is false when there is none (a
// network error, a timeout, an error of the gate's own).
func serverReply(err error) (string, bool) {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) {
		return "", false
	}
	return rerr.Error(), true
}

// IsRedirect reports whether err is a Redis Cluster node's redirection (MOVED or ASK): a client that is
// not in cluster mode would be redirected again on every try.
func IsRedirect(err error) bool {
	msg, ok := serverReply(err)
	return ok && (strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK "))
}

// IsNotACluster reports whether err is a Redis without cluster support answering the cluster commands
// a client in cluster mode (REDIS_MODE=cluster) starts with: asking again cannot help.
func IsNotACluster(err error) bool {
	msg, ok := serverReply(err)
	return ok && strings.HasPrefix(msg, "ERR This instance has cluster support disabled")
}

// IsCertificateError reports whether err is our side refusing the server's TLS certificate: signed by
// an authority we do not trust (REDIS_CA_FILE missing or wrong), issued for another name, or expired.
// Retrying cannot help, because the trusted authorities are read once at start: like refused
// credentials, it is a configuration problem to report at once, not an unreachable Redis.
func IsCertificateError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// SetLogger sends go-redis's own diagnostics to log at debug level, so that nothing but JSON (or
// text) records reaches stderr.
func SetLogger(log *slog.Logger) { redis.SetLogger(slogPrinter{log}) }

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.DebugContext(ctx, "redis client diagnostic", "detail", fmt.Sprintf(format, v...))
}
