package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/internal/connurl"
)

// unreachableError is a store that cannot be reached or used, described in
// one line that names the server (never the password) and says what to
// check. The driver's error stays reachable through Unwrap, for errors.Is;
// its text, which can span lines and repeat itself per address tried, is
// left out of the message.
type unreachableError struct {
	msg string
	err error
}

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Unwrap() error { return e.err }

// postgresError describes a failure to reach or use PostgreSQL at url,
// during op ("reach", "migrate", ...).
func postgresError(url, op string, err error) error {
	where := config.Redact(url)
	timeout := connectTimeout
	// With ambiguous user info pgx reads parts of the password as the host
	// or the database: only the redacted URL is safe to show.
	ambiguous := connurl.CheckUserInfo(url) != nil
	if cfg, perr := pgconn.ParseConfig(url); perr == nil && !ambiguous {
		where = fmt.Sprintf("%s (database %q, user %q)", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), cfg.Database, cfg.User)
		if cfg.ConnectTimeout > 0 {
			timeout = min(timeout, cfg.ConnectTimeout)
		}
	}
	reason, hint := postgresReason(err, timeout)
	if ambiguous {
		reason, hint = "the URL is ambiguous", connurl.ErrAmbiguous.Error()
	}
	msg := fmt.Sprintf("cannot %s PostgreSQL at %s: %s; %s", op, where, reason, hint)
	// The driver's and the server's texts are not ours: whatever they
	// quote, no form of the password leaves.
	// Longest first, so that a form that contains another goes whole;
	// forms under 4 characters would mangle the message.
	pws := config.Passwords(url)
	slices.SortFunc(pws, func(a, b string) int { return len(b) - len(a) })
	for _, pw := range pws {
		if len(pw) >= 4 {
			msg = strings.ReplaceAll(msg, pw, connurl.Redacted)
		}
	}
	return &unreachableError{msg: msg, err: err}
}

// postgresReason says in a few words why PostgreSQL failed, and what to
// check.
func postgresReason(err error, timeout time.Duration) (reason, hint string) {
	env := config.EnvDatabaseURL
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "28P01":
			return "the password was refused", "check the user and password in " + env
		case "28000":
			return pgErr.Message, "check the user in " + env + " and the server's pg_hba.conf"
		case "3D000":
			return pgErr.Message, "check the database name in " + env + ", or create the database"
		case "53300":
			return "the server has no connection slots left", "raise max_connections or lower pool_max_conns in " + env
		case "57P03":
			return "the server is starting up or shutting down", "try again in a moment"
		}
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")", "check " + env + " and the server's log"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", "check that PostgreSQL is running there and that " + env + " names the right host and port"
	case errors.As(err, &dnsErr):
		return "host " + dnsErr.Name + " not found", "check the host in " + env
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no answer within %s", timeout), "check that PostgreSQL is running there and that no firewall drops the connection"
	case errors.Is(err, context.Canceled):
		return "interrupted", "try again"
	case strings.Contains(err.Error(), "tls"):
		return "TLS failed", "check sslmode and the certificates in " + env
	}
	return firstLine(err.Error()), "check " + env + " and that the server is running"
}

// firstLine returns s up to its first line break.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
