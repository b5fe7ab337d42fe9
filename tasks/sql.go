package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.yaml.in/yaml/v3"

	"github.com/peerdb-maintenance/peerdb-maintenance/internal/safefile"
)

// SQL runs statements against PostgreSQL (PeerDB's catalog), all of them in one transaction: either
// every statement of the task commits or none does. The connection is retried with backoff until
// PostgreSQL answers or the task's timeout passes. Passwords never appear in logs or errors.
type SQL struct {
	// Target describes the server for logs and errors: user, host, port and database, no password.
	Target string

	scripts []sqlScript
	config  *pgconn.Config // holds the password
	backoff backoff
}

// FencingTokenSetting is the session setting that holds the holder's fencing token inside an sql
// task's transaction (set with set_config(..., true), so it ends with the transaction).
const FencingTokenSetting = "peerdb_maintenance.fencing_token"

// sqlScript is one unit sent to the server: an inline statement or a whole file.
type sqlScript struct {
	source string // "statements[1]" or the file's path
	text   string
}

type sqlFields struct {
	DSN        string   `yaml:"dsn"`
	DSNEnv     string   `yaml:"dsn_env"`
	Files      []string `yaml:"files"`
	Statements []string `yaml:"statements"`
}

func init() { Register("sql", decodeSQL) }

func decodeSQL(node *yaml.Node, lc LoadContext) (Task, error) {
	var f sqlFields
	errs, ok := decodeKind(node, &f)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &SQL{backoff: defaultBackoff}
	config, err := sqlConfig(f, lc)
	if err != nil {
		errs = append(errs, err)
	} else {
		t.config = config
		t.Target = describeTarget(config)
	}
	switch {
	case len(f.Files) > 0 && len(f.Statements) > 0:
		errs = append(errs, Fieldf("", "files and statements are exclusive: use one task for each"))
	case len(f.Files) == 0 && len(f.Statements) == 0:
		errs = append(errs, Fieldf("", "files or statements is required"))
	}
	for i, path := range f.Files {
		field := fmt.Sprintf("files[%d]", i)
		data, err := readSQLFile(lc.ctx(), path)
		switch {
		case path == "":
			errs = append(errs, Fieldf(field, "empty path"))
		case err != nil:
			errs = append(errs, Fieldf(field, "cannot read: %v", err))
		case strings.TrimSpace(string(data)) == "":
			errs = append(errs, Fieldf(field, "%s is empty", path))
		default:
			t.scripts = append(t.scripts, sqlScript{source: path, text: string(data)})
		}
	}
	for i, s := range f.Statements {
		field := fmt.Sprintf("statements[%d]", i)
		if strings.TrimSpace(s) == "" {
			errs = append(errs, Fieldf(field, "empty statement"))
			continue
		}
		t.scripts = append(t.scripts, sqlScript{source: field, text: s})
	}
	return t, errors.Join(errs...)
}

// sqlConfig finds the connection settings: dsn, dsn_env, or PeerDB's PEERDB_CATALOG_* variables.
func sqlConfig(f sqlFields, lc LoadContext) (*pgconn.Config, error) {
	var dsn, field string
	switch {
	case f.DSN != "" && f.DSNEnv != "":
		return nil, Fieldf("", "dsn and dsn_env are exclusive")
	case f.DSN != "":
		dsn, field = f.DSN, "dsn"
	case f.DSNEnv != "":
		dsn, field = lc.getenv(f.DSNEnv), "dsn_env"
		if dsn == "" {
			return nil, Fieldf(field, "environment variable %s is empty or not set", f.DSNEnv)
		}
	default:
		var err error
		if dsn, err = catalogDSN(lc); err != nil {
			return nil, Fieldf("", "no dsn or dsn_env, and %v", err)
		}
		field = ""
	}
	config, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, Fieldf(field, "not a valid PostgreSQL connection string %s: %s", RedactDSN(dsn), parseProblem(err, dsn))
	}
	// On cancellation, ask the server to cancel the running statement before dropping the connection,
	// so that a stopped task does not leave a statement running and holding locks.
	config.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	return config, nil
}

// catalogDSN builds a connection string from PeerDB's catalog variables.
func catalogDSN(lc LoadContext) (string, error) {
	host, port := lc.getenv("PEERDB_CATALOG_HOST"), lc.getenv("PEERDB_CATALOG_PORT")
	user, db := lc.getenv("PEERDB_CATALOG_USER"), lc.getenv("PEERDB_CATALOG_DATABASE")
	var missing []string
	for name, v := range map[string]string{"PEERDB_CATALOG_HOST": host, "PEERDB_CATALOG_USER": user, "PEERDB_CATALOG_DATABASE": db} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", fmt.Errorf("%s not set", strings.Join(missing, ", "))
	}
	if port == "" {
		port = "5432"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("PEERDB_CATALOG_PORT %q is not a port", port)
	}
	sslmode := "prefer"
	if v := lc.getenv("PEERDB_CATALOG_REQUIRE_TLS"); v != "" {
		tls, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("PEERDB_CATALOG_REQUIRE_TLS %q is not true or false", v)
		}
		if tls {
			sslmode = "require"
		}
	}
	kv := func(k, v string) string {
		return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return strings.Join([]string{kv("host", host), kv("port", port), kv("user", user),
		kv("password", lc.getenv("PEERDB_CATALOG_PASSWORD")), kv("dbname", db), kv("sslmode", sslmode)}, " "), nil
}

func describeTarget(c *pgconn.Config) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Run connects, waiting for PostgreSQL within ctx, and runs every script in one transaction, which
// first takes the gate's advisory lock (see AdvisoryLockKey) and ends by itself when left idle for
// longer than the lock's TTL.
func (s *SQL) Run(ctx context.Context, env Env) error {
	start := time.Now()
	conn, err := s.connect(ctx, env.Logger)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.Target, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // closing without COMMIT rolls back
	}()
	if _, err := conn.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		return s.interrupted(ctx, "begin transaction", err)
	}
	if err := s.serialize(ctx, conn, env); err != nil {
		return err
	}
	// The fencing token as a session setting local to the transaction, so that statements (or the
	// triggers and functions they call) can refuse a stale writer: current_setting('peerdb_maintenance.fencing_token').
	token := []byte(strconv.FormatInt(env.FencingToken, 10))
	if err := conn.ExecParams(ctx, "SELECT set_config($1, $2, true)", [][]byte{[]byte(FencingTokenSetting), token}, nil, nil, nil).Read().Err; err != nil {
		return s.interrupted(ctx, "set "+FencingTokenSetting, err)
	}
	for i, sc := range s.scripts {
		label := fmt.Sprintf("statement %d of %d (%s)", i+1, len(s.scripts), sc.source)
		ended, err := execScript(ctx, conn, sc.text)
		switch {
		case err != nil && expired(ctx):
			return s.interrupted(ctx, label, err)
		case err != nil && ended != "":
			return fmt.Errorf("%s failed after it ended the task's transaction with %s (what ran before that is %s, the rest rolled back): %s",
				label, ended, endedAs(ended), statementProblem(sc.text, err))
		case err != nil:
			return fmt.Errorf("%s failed, transaction rolled back: %s", label, statementProblem(sc.text, err))
		case ended != "" || conn.TxStatus() != 'T':
			if ended == "" {
				ended = "COMMIT or ROLLBACK"
			}
			return fmt.Errorf("%s ended the task's transaction with %s (what ran before that is %s): a task runs in one transaction, so its statements must not COMMIT or ROLLBACK",
				label, ended, endedAs(ended))
		}
	}
	if _, err := conn.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		return s.interrupted(ctx, "commit", err)
	}
	env.Logger.Info("sql transaction committed", "target", s.Target, "count", len(s.scripts),
		"duration_ms", time.Since(start).Milliseconds())
	return nil
}

// execScript runs one script (one or more statements in one simple query) and reads its results without
// keeping their rows: a migration's SELECT of many rows costs no memory. ended is the first command that
// ended the transaction the task runs in (COMMIT, ROLLBACK or PREPARE TRANSACTION, also as END or ABORT),
// "" when none did.
func execScript(ctx context.Context, conn *pgconn.PgConn, text string) (ended string, err error) {
	mrr := conn.Exec(ctx, text)
	for mrr.NextResult() {
		tag, _ := mrr.ResultReader().Close() // the rows are read and dropped; an error is mrr.Close's
		if t := tag.String(); ended == "" && (t == "COMMIT" || t == "ROLLBACK" || t == "PREPARE TRANSACTION") {
			ended = t
		}
	}
	return ended, mrr.Close()
}

// endedAs says what became of the statements before a command that ended the transaction.
func endedAs(ended string) string {
	switch ended {
	case "COMMIT":
		return "committed"
	case "ROLLBACK":
		return "rolled back"
	case "PREPARE TRANSACTION":
		return "prepared, neither committed nor rolled back"
	}
	return "committed or rolled back"
}

// content is the text of every script, files included: an edited SQL file is a changed task.
func (s *SQL) content() []string {
	out := make([]string, len(s.scripts))
	for i, sc := range s.scripts {
		out[i] = sc.text
	}
	return out
}

func (s *SQL) interrupted(ctx context.Context, what string, err error) error {
	if expired(ctx) {
		return fmt.Errorf("%s stopped, transaction rolled back: %w", what, context.Cause(ctx))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// connect opens a connection, retrying with backoff while PostgreSQL is unreachable or starting up.
// Refused credentials and a missing database fail at once.
func (s *SQL) connect(ctx context.Context, log *slog.Logger) (*pgconn.PgConn, error) {
	var conn *pgconn.PgConn
	_, err := s.backoff.retry(ctx, log, func() (bool, error) {
		var err error
		conn, err = pgconn.ConnectConfig(ctx, s.config)
		if err != nil {
			return !permanentConnectError(err), err
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	log.Debug("sql connected", "target", s.Target)
	return conn, nil
}

// permanentConnectError reports whether retrying cannot help: authentication refused (class 28) or
// the database does not exist (3D000).
func permanentConnectError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000"
	}
	return false
}

// statementProblem describes a failed statement: the server's error with the line and column it
// points at, and that line.
func statementProblem(text string, err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	msg := pe.Error()
	if pe.Detail != "" {
		msg += "; detail: " + pe.Detail
	}
	if pe.Hint != "" {
		msg += "; hint: " + pe.Hint
	}
	if pe.Position > 0 {
		line, col, near := position(text, int(pe.Position))
		msg = fmt.Sprintf("at line %d, column %d: %s; near: %s", line, col, msg, near)
	}
	return msg
}

// position turns the server's 1-based character offset into a line, a column and that line's text.
func position(text string, offset int) (line, col int, near string) {
	runes := []rune(text)
	offset = min(max(offset-1, 0), len(runes))
	line, col = 1, 1
	lineStart := 0
	for i := 0; i < offset; i++ {
		if runes[i] == '\n' {
			line, col, lineStart = line+1, 1, i+1
		} else {
			col++
		}
	}
	lineEnd := lineStart
	for lineEnd < len(runes) && runes[lineEnd] != '\n' {
		lineEnd++
	}
	near = strings.TrimSpace(string(runes[lineStart:lineEnd]))
	if r := []rune(near); len(r) > 120 {
		near = string(r[:120]) + "…"
	}
	return line, col, near
}

var (
	kvPasswordRe  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)`) })
	urlPasswordRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(password=)[^&#\s]*`) })
)

// RedactDSN hides the password of a PostgreSQL connection string, URL or key=value form, so that it
// can be logged.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
			return urlPasswordRe().ReplaceAllString(u.String(), "${1}xxxxx")
		}
		// Unparsable URL: drop everything between the scheme and the host.
		scheme, rest, _ := strings.Cut(dsn, "://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = "xxxxx@" + rest[at+1:]
		}
		return urlPasswordRe().ReplaceAllString(scheme+"://"+rest, "${1}xxxxx")
	}
	return kvPasswordRe().ReplaceAllString(dsn, "${1}xxxxx")
}

// parseProblem is pgconn's parse error without the connection string it quotes (url.Error quotes
// the whole URL, password included).
func parseProblem(err error, dsn string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if i := strings.Index(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	if strings.Contains(msg, dsn) {
		msg = strings.ReplaceAll(msg, dsn, RedactDSN(dsn))
	}
	return msg
}

// maxSQLFile bounds one SQL file: migrations are kilobytes, and the bound keeps a wrong path (a log,
// /dev/zero) from taking the gate's memory before any lock is taken.
const maxSQLFile = 16 << 20

func readSQLFile(ctx context.Context, path string) ([]byte, error) {
	data, err := safefile.ReadFile(ctx, path, maxSQLFile)
	if errors.Is(err, safefile.ErrTooLarge) {
		err = fmt.Errorf("larger than %d MiB", maxSQLFile>>20)
	}
	return data, err
}
