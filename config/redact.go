package config

import "github.com/edupulse/eventbus/internal/connurl"

// Redact returns a database or broker URL with its passwords replaced by
// xxxxx: the password of the URL's user, and password or sslpassword
// parameters, in a URL's query or in a key=value DSN. The rest is kept, so
// the result still says which server is meant. When a URL cannot be parsed,
// or its user info is ambiguous, everything that could be a password is
// replaced: more than needed, never less.
func Redact(raw string) string { return connurl.Redact(raw) }

// Passwords returns the passwords that a database or broker URL, or a
// key=value DSN, holds, in every form a message may quote them in (as
// given, decoded, encoded). Tools use it to scrub text they did not compose;
// Redact is for URLs.
func Passwords(raw string) []string { return connurl.Passwords(raw) }
