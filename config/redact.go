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
