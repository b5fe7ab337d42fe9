// Package config reads the gate's configuration from the environment (github.com/caarlos0/env/v11)
// and validates all of it before any I/O happens.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/duration"
	"github.com/peerdb-maintenance/peerdb-maintenance/internal/redisconn"
)

// Config is every setting of DESIGN.md section 3. The help tag is the variable's one line in
// --help and "help env" (see Vars); helpDefault names a default that is not a value (the hostname).
type Config struct {
	Version         string        `env:"PEERDB_DEPLOYMENT_VERSION,required,notEmpty" help:"the version this deployment runs; the gate runs the tasks when Redis records another one"`
	RedisURL        string        `env:"REDIS_URL" envDefault:"redis://localhost:6379/0" help:"redis://, rediss:// (TLS) or unix://; Sentinel with ?master_name= (more sentinels with &addr=), Cluster with REDIS_MODE=cluster (more nodes with &addr=)"`
	RedisMode       string        `env:"REDIS_MODE" envDefault:"auto" help:"auto (Sentinel when master_name is present, else standalone), standalone, sentinel or cluster"`
	RedisCAFile     string        `env:"REDIS_CA_FILE" help:"PEM bundle for a rediss:// server with a private CA"`
	RedisCertFile   string        `env:"REDIS_CERT_FILE" help:"client certificate (PEM), for servers that require TLS client authentication"`
	RedisKeyFile    string        `env:"REDIS_KEY_FILE" help:"client key (PEM) of REDIS_CERT_FILE"`
	Name            string        `env:"MAINTENANCE_NAME" envDefault:"default" help:"the gate's name; independent gates (pre, post, ...) use different names"`
	KeyPrefix       string        `env:"MAINTENANCE_KEY_PREFIX" envDefault:"peerdb:maintenance" help:"namespace of every Redis key"`
	TasksFile       string        `env:"MAINTENANCE_TASKS_FILE" help:"YAML or JSON task list; empty: the command after --, else no tasks (the version is just recorded)"`
	LockTTL         time.Duration `env:"MAINTENANCE_LOCK_TTL" envDefault:"30s" help:"lock expiry (at least 1s); refreshed every TTL/3"`
	WaitTimeout     time.Duration `env:"MAINTENANCE_WAIT_TIMEOUT" envDefault:"15m" help:"longest wait for another replica's run (exit 3 after)"`
	ConnectTimeout  time.Duration `env:"MAINTENANCE_CONNECT_TIMEOUT" envDefault:"2m" help:"longest wait for Redis to answer (exit 3 after)"`
	Force           bool          `env:"MAINTENANCE_FORCE" envDefault:"false" help:"run even when the version is recorded; for one-shot runs (a shell, a Job), never in an init container"`
	Downgrade       string        `env:"MAINTENANCE_DOWNGRADE" envDefault:"skip" help:"when the recorded version is newer: skip (exit 0, record nothing), fail (exit 5) or run"`
	FailureCooldown time.Duration `env:"MAINTENANCE_FAILURE_COOLDOWN" envDefault:"30s" help:"after a failed attempt for a version, attempts for it exit 1 at once until this has passed; 0 disables"`
	DryRun          bool          `env:"MAINTENANCE_DRY_RUN" envDefault:"false" help:"print the plan (which tasks would run, which are skipped and why), change nothing; not in an init container"`
	Holder          string        `env:"MAINTENANCE_HOLDER" helpDefault:"hostname" help:"identity written into the lock and history"`
	TerminationLog  string        `env:"MAINTENANCE_TERMINATION_LOG" envDefault:"/dev/termination-log" help:"where the one-line outcome is written when that path exists (kubectl describe pod shows it); empty disables"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"json" help:"json or text"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`

	// Pod is the Kubernetes pod name when the chart passes it (downward API), else empty.
	Pod string `env:"POD_NAME" help:"the pod's name (from the downward API), shown with the holder"`
	// InKubernetes is true when the process runs in a Kubernetes pod.
	InKubernetes bool `env:"-"`

	// Redis is the parsed REDIS_URL with its TLS settings.
	Redis *redisconn.Target `env:"-"`
}

// Downgrade policies.
const (
	DowngradeSkip = "skip"
	DowngradeFail = "fail"
	DowngradeRun  = "run"
)

// MinLockTTL is the shortest lock TTL accepted: the keeper refreshes every TTL/3 and needs a few round
// trips of slack.
const MinLockTTL = time.Second

// Problem is one invalid variable.
type Problem struct {
	Var     string
	Problem string
}

// Error lists every invalid variable at once.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Var + ": " + p.Problem
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// The characters each name admits, checked rune by rune: a regular expression would be compiled at every
// start of the gate, on the fast path too. perlSpace is the \s of Go's regular expressions.
func perlSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r' }

func nameChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

func prefixChar(r rune) bool { return r != '{' && r != '}' && !perlSpace(r) }

func versionChar(r rune) bool {
	return !perlSpace(r) && !unicode.Is(unicode.Cc, r) && !unicode.Is(unicode.Cf, r)
}

// matches reports whether s has 1 to limit characters, each admitted by ok.
func matches(ok func(rune) bool, s string, limit int) bool {
	if s == "" || utf8.RuneCountInString(s) > limit {
		return false
	}
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

// Load reads and validates the configuration from getenv. Only the variables the gate knows are read.
// The error, when not nil, is an *Error naming every bad variable.
func Load(getenv func(string) string) (*Config, error) {
	environ := map[string]string{}
	for _, key := range keys() {
		if v := getenv(key); v != "" {
			environ[key] = v
		}
	}
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: environ})
	var problems []Problem
	if err != nil {
		problems = envProblems(err, environ)
	}
	unparsed := map[string]bool{}
	for _, p := range problems {
		unparsed[p.Var] = true
	}
	problems = append(problems, cfg.validate(environ, unparsed)...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	if cfg.Holder == "" {
		cfg.Holder, _ = os.Hostname()
		if cfg.Holder == "" {
			cfg.Holder = "unknown"
		}
	}
	cfg.InKubernetes = getenv("KUBERNETES_SERVICE_HOST") != ""
	return &cfg, nil
}

// validate checks what the env tags cannot. Variables that failed to parse (unparsed) hold their
// zero value and are not checked again: one problem per variable.
func (c *Config) validate(environ map[string]string, unparsed map[string]bool) []Problem {
	var ps []Problem
	add := func(v, format string, args ...any) {
		ps = append(ps, Problem{Var: v, Problem: fmt.Sprintf(format, args...)})
	}
	if c.Version != "" && !matches(versionChar, c.Version, 200) {
		add("PEERDB_DEPLOYMENT_VERSION", "%q must be 1 to 200 characters without spaces or control characters", c.Version)
	}
	if !matches(nameChar, c.Name, 64) {
		add("MAINTENANCE_NAME", "%q must be 1 to 64 of A-Z a-z 0-9 . _ -", c.Name)
	}
	if !matches(prefixChar, c.KeyPrefix, 128) {
		add("MAINTENANCE_KEY_PREFIX", "%q must be 1 to 128 characters without spaces or braces", c.KeyPrefix)
	}
	// The holder and the pod are written to the lock and history and printed by status and history:
	// a line break there would forge lines of their output.
	for _, v := range []struct{ name, val string }{{"MAINTENANCE_HOLDER", c.Holder}, {"POD_NAME", c.Pod}} {
		if utf8.RuneCountInString(v.val) > 253 || strings.IndexFunc(v.val, unicode.IsControl) >= 0 {
			add(v.name, "%q must be at most 253 characters without control characters (line breaks, tabs)", v.val)
		}
	}
	// Unset durations hold their (valid) defaults, so only set ones can fail here. A zero TTL would
	// make the keeper's ticker panic.
	if !unparsed["MAINTENANCE_LOCK_TTL"] && c.LockTTL < MinLockTTL {
		add("MAINTENANCE_LOCK_TTL", "%s is shorter than the minimum %s", c.LockTTL, MinLockTTL)
	}
	for _, t := range []struct {
		v string
		d time.Duration
	}{{"MAINTENANCE_WAIT_TIMEOUT", c.WaitTimeout}, {"MAINTENANCE_CONNECT_TIMEOUT", c.ConnectTimeout}} {
		if !unparsed[t.v] && t.d <= 0 {
			add(t.v, "%s must be positive", t.d)
		}
	}
	if c.FailureCooldown < 0 {
		add("MAINTENANCE_FAILURE_COOLDOWN", "%s must not be negative (0 disables)", c.FailureCooldown)
	}
	oneOf := func(v, val string, allowed ...string) {
		if !slices.Contains(allowed, val) {
			add(v, "%q is not one of %s", val, strings.Join(allowed, ", "))
		}
	}
	oneOf("MAINTENANCE_DOWNGRADE", c.Downgrade, DowngradeSkip, DowngradeFail, DowngradeRun)
	oneOf("LOG_FORMAT", c.LogFormat, "json", "text")
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	if raw, set := environ["LOG_LEVEL"]; set && !slices.Contains(levels, c.LogLevel) {
		add("LOG_LEVEL", "%q is not one of debug, info, warn, error", raw)
	}
	// A bad mode is reported, and the URL and TLS files are still checked (as in auto mode), so that
	// every bad variable is named at once.
	mode := c.RedisMode
	if !slices.Contains(redisconn.Modes, mode) {
		oneOf("REDIS_MODE", mode, redisconn.Modes...)
		mode = "auto"
	}
	target, err := redisconn.Parse(redisconn.Settings{
		URL: c.RedisURL, Mode: mode, CAFile: c.RedisCAFile, CertFile: c.RedisCertFile, KeyFile: c.RedisKeyFile,
	})
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		var se *redisconn.SettingError
		switch {
		case errors.As(err, &se):
			ps = append(ps, Problem{Var: se.Var, Problem: se.Problem})
		case err != nil:
			ps = append(ps, Problem{Var: "REDIS_URL", Problem: err.Error()})
		}
	}
	c.Redis = target
	return ps
}

// envProblems turns caarlos0/env's errors into problems named by variable. Parse errors quote the
// value, except for REDIS_URL which may hold a password.
func envProblems(err error, environ map[string]string) []Problem {
	var ps []Problem
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	fieldVar := fieldVars()
	for _, e := range errs {
		var (
			notSet env.VarIsNotSetError
			empty  env.EmptyVarError
			parse  env.ParseError
		)
		switch {
		case errors.As(e, &notSet):
			ps = append(ps, Problem{Var: notSet.Key, Problem: "required, not set"})
		case errors.As(e, &empty):
			ps = append(ps, Problem{Var: empty.Key, Problem: "required, must not be empty"})
		case errors.As(e, &parse):
			v := fieldVar[parse.Name]
			problem := fmt.Sprintf("%q is not a valid %s", environ[v], kindOf(parse.Type))
			if parse.Type == reflect.TypeFor[time.Duration]() && duration.TooLarge(environ[v]) {
				problem = fmt.Sprintf("%q is too large for a duration: at most %s", environ[v], duration.Max)
			}
			ps = append(ps, Problem{Var: v, Problem: problem})
		default:
			ps = append(ps, Problem{Var: "environment", Problem: e.Error()})
		}
	}
	return ps
}

func kindOf(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return "duration (Go syntax: 30s, 2m, 1h30m)"
	case reflect.TypeFor[bool]():
		return "boolean (true or false)"
	case reflect.TypeFor[slog.Level]():
		return "log level (debug, info, warn, error)"
	}
	return t.String()
}

// keys lists every variable the Config reads.
func keys() []string {
	var ks []string
	for _, v := range fieldVars() {
		ks = append(ks, v)
	}
	return ks
}

func fieldVars() map[string]string {
	m := map[string]string{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name != "" && name != "-" {
			m[f.Name] = name
		}
	}
	return m
}
