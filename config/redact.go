package config

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces a password, as url.URL.Redacted does.
const redacted = "xxxxx"

// Redact returns a database or broker URL with its passwords replaced by
// xxxxx: the password of the URL's user, and password or sslpassword
// parameters, in a URL's query or in a key=value DSN. The rest is kept, so
// the result still says which server is meant. When a URL cannot be parsed,
// everything that could be a password is replaced: more than needed, never
// less.
func Redact(raw string) string {
	scheme, rest, isURL := strings.Cut(raw, "://")
	if !isURL {
		return dsnPassword.ReplaceAllString(raw, "${1}"+redacted)
	}
	u, err := url.Parse(raw)
	// An '@' after the host means url.Parse split the user info in the wrong
	// place, as with an unescaped '/' or '#' in the password.
	if err == nil && u.Opaque == "" && !strings.Contains(u.Path+u.RawQuery+u.Fragment, "@") {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
		q := u.Query()
		for key := range q {
			if isPasswordKey(key) {
				q[key] = []string{redacted}
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			rest = user + ":" + redacted + rest[at:]
		}
	}
	return scheme + "://" + queryPassword.ReplaceAllString(rest, "${1}"+redacted)
}

func isPasswordKey(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword")
}

var (
	// dsnPassword matches the value of a password in a key=value DSN: quoted
	// (with backslash escapes, or unterminated to the end) or bare.
	dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|'.*$|\S*)`)
	// queryPassword matches the value of a password parameter in a query.
	queryPassword = regexp.MustCompile(`(?i)((?:^|[?&;])(?:ssl)?password=)[^&;#]*`)
)

// Passwords returns the passwords that a database or broker URL, or a
// key=value DSN, holds: the user's password and password parameters, each as
// given and decoded, the forms a message may quote them in. Tools use it to
// scrub text they did not compose; Redact is for URLs.
func Passwords(raw string) []string {
	var out []string
	add := func(pw string, decode func(string) (string, error)) {
		if pw == "" {
			return
		}
		out = append(out, pw)
		if dec, err := decode(pw); err == nil && dec != pw {
			out = append(out, dec)
		}
	}
	_, rest, isURL := strings.Cut(raw, "://")
	if !isURL {
		for _, m := range dsnPassword.FindAllStringSubmatch(raw, -1) {
			add(unquoteDSN(m[2]), url.QueryUnescape)
		}
		return out
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
			add(pw, url.PathUnescape)
		}
	}
	for _, m := range queryPassword.FindAllStringSubmatchIndex(raw, -1) {
		add(raw[m[3]:m[1]], url.QueryUnescape)
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
