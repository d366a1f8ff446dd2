// Package connurl handles the secrets in database and broker URLs: it hides
// passwords for messages (Redact), lists every form a password may take in
// text (Passwords), and refuses URLs whose user info different parsers read
// differently (CheckUserInfo), because those put parts of the password where
// a host, port or database name is expected, and so into messages.
package connurl

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces a password, as url.URL.Redacted does.
const Redacted = "xxxxx"

// ErrAmbiguous reports a URL whose user info is not percent-encoded where it
// must be: Go's URL parser, libpq (and pgx) and amqp091 would read its user,
// password and host differently.
var ErrAmbiguous = errors.New("the user or password holds a character that must be percent-encoded " +
	"('@' as %40, '/' as %2F, '?' as %3F, '#' as %23, '%' as %25, ':' in the user as %3A, a space as %20)")

// CheckUserInfo returns ErrAmbiguous when raw is a URL whose user info
// parsers disagree on: more than one '@' before the path, or any '@' after
// a '/', '?' or '#' (a password holding one of them: in
// "postgres://app:p@ss/word@db/x" every parser reads the password "p", the
// host "ss" and the database "word@db/x", which would show the rest of the
// password as host and path).
// libpq ends the user info at the first '@', Go at the last one before the
// path, and a '/', '?' or '#' in a password ends Go's host early, so the
// parts of such a password land in the host, the port, the database or
// virtual host name, or the query, and from there into messages.
// A key=value DSN is not a URL: it passes.
func CheckUserInfo(raw string) error {
	_, rest, isURL := strings.Cut(raw, "://")
	if !isURL {
		return nil
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if strings.Count(rest[:end], "@") > 1 || strings.Contains(rest[end:], "@") {
		return ErrAmbiguous
	}
	return nil
}

// Redact returns a database or broker URL with its passwords replaced by
// xxxxx: the password of the URL's user, and password or sslpassword
// parameters, in a URL's query or in a key=value DSN. The rest is kept, so
// the result still says which server is meant. When a URL cannot be parsed,
// or its user info is ambiguous, everything that could be a password is
// replaced: more than needed, never less.
func Redact(raw string) string {
	scheme, rest, isURL := strings.Cut(raw, "://")
	if !isURL {
		return dsnPassword.ReplaceAllString(raw, "${1}"+Redacted)
	}
	u, err := url.Parse(raw)
	if err == nil && u.Opaque == "" && CheckUserInfo(raw) == nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
		q := u.Query()
		for key := range q {
			if isPasswordKey(key) {
				q[key] = []string{Redacted}
			}
		}
		u.RawQuery = q.Encode()
		if u.Fragment != "" {
			// Database and broker URLs have no fragment: libpq reads a '#'
			// as part of the value before it, a password perhaps.
			u.Fragment, u.RawFragment = Redacted, ""
		}
		return u.String()
	}
	// Password parameters first, so that an '@' in one is not taken for
	// the end of the user info below.
	rest = queryPassword.ReplaceAllString(rest, "${1}"+Redacted)
	// Everything from the first ':' of the user info to the last '@' may be
	// password: libpq and Go do not agree on which '@' ends it.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword && !strings.ContainsAny(user, "/?#") {
			rest = user + ":" + Redacted + rest[at:]
		} else {
			rest = Redacted + rest[at:]
		}
	} else if colon := strings.IndexByte(rest, ':'); colon >= 0 {
		// No '@', and not a valid URL: what follows the first ':' may be
		// the start of a password cut short (by a comma in a list, say).
		end := strings.IndexAny(rest[colon:], "/?#")
		if end < 0 {
			end = len(rest) - colon
		}
		rest = rest[:colon+1] + Redacted + rest[colon+end:]
	}
	return scheme + "://" + queryPassword.ReplaceAllString(rest, "${1}"+Redacted)
}

func isPasswordKey(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword")
}

var (
	// dsnPassword matches the value of a password in a key=value DSN: quoted
	// (with backslash escapes, or unterminated to the end) or bare.
	dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|'.*$|\S*)`)
	// queryPassword matches the value of a password parameter in a query,
	// '#' included: libpq reads no fragment.
	queryPassword = regexp.MustCompile(`(?i)((?:^|[?&;])(?:ssl)?password=)[^&;]*`)
)

// Passwords returns the passwords that a database or broker URL, or a
// key=value DSN, holds: the user's password and password parameters, in
// every form a message may quote them in: as given, decoded, and encoded
// again as a path, a query or user info would encode them. When the user
// info is ambiguous, the password is taken as everything from the first ':'
// to the last '@'. Tools use it to scrub text they did not compose; Redact is
// for URLs.
func Passwords(raw string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	forms := func(pw string, decode func(string) (string, error)) {
		if pw == "" {
			return
		}
		add(pw)
		dec := pw
		if d, err := decode(pw); err == nil {
			dec = d
		}
		add(dec)
		add(url.PathEscape(dec))
		add(url.QueryEscape(dec))
		add(strings.TrimPrefix(url.UserPassword("", dec).String(), ":"))
	}
	_, rest, isURL := strings.Cut(raw, "://")
	if !isURL {
		for _, m := range dsnPassword.FindAllStringSubmatch(raw, -1) {
			forms(unquoteDSN(m[2]), url.QueryUnescape)
		}
		return out
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
			forms(pw, url.PathUnescape)
		}
	}
	for _, m := range queryPassword.FindAllStringSubmatchIndex(raw, -1) {
		forms(raw[m[3]:m[1]], url.QueryUnescape)
	}
	return out
}

// unquoteDSN returns a DSN value without its single quotes and escapes.
func unquoteDSN(v string) string {
	if !strings.HasPrefix(v, "'") {
		return v
	}
	v = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
	return strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v)
}
