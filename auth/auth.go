// Package auth holds the HTTP API's access tokens and their scopes: how
// EVENTBUS_API_TOKENS is parsed, and how a presented secret is matched. It is
// a leaf: package config reads tokens with it and package httpapi checks
// requests with it, and neither imports the other for them.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Scope is a set of permissions a token grants.
type Scope uint8

// The scopes. Admin includes the others.
const (
	ScopePublish Scope = 1 << iota // POST /v1/events
	ScopeRead                      // GET events, streams and status
	ScopeAdmin                     // everything, including replay and dead letters
)

var scopeNames = []struct {
	scope Scope
	name  string
}{{ScopePublish, "publish"}, {ScopeRead, "read"}, {ScopeAdmin, "admin"}}

// Allows reports whether s grants want.
func (s Scope) Allows(want Scope) bool { return s&ScopeAdmin != 0 || s&want == want }

// String returns the scopes joined by '+', as in EVENTBUS_API_TOKENS.
func (s Scope) String() string {
	var names []string
	for _, n := range scopeNames {
		if s&n.scope != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, "+")
}

// MarshalText encodes s as String does.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Token is an API token: a name, for logs, the scopes it grants, and the
// secret a client presents. The secret is unexported and every way of
// printing a Token leaves it out.
type Token struct {
	Name   string
	Scopes Scope
	secret string
}

// Token limits.
const (
	MinSecretLen = 16
	maxSecretLen = 512
	maxNameLen   = 64
)

// ErrBadToken reports an API token (or a list of them) that is not well
// formed. Its messages never contain a secret.
var ErrBadToken = errors.New("invalid API token")

// NewToken returns a token, checking its name, secret and scopes.
func NewToken(name, secret string, scopes Scope) (Token, error) {
	if err := checkTokenName(name); err != nil {
		return Token{}, err
	}
	if err := checkSecret(secret); err != nil {
		return Token{}, fmt.Errorf("token %q: %w", name, err)
	}
	if scopes == 0 || scopes&^(ScopePublish|ScopeRead|ScopeAdmin) != 0 {
		return Token{}, fmt.Errorf("%w: token %q: give it one or more of the scopes publish, read and admin", ErrBadToken, name)
	}
	return Token{Name: name, Scopes: scopes, secret: secret}, nil
}

// String describes the token without its secret.
func (t Token) String() string { return t.Name + "(" + t.Scopes.String() + ")" }

// GoString keeps %#v from printing the secret.
func (t Token) GoString() string { return "auth.Token{" + t.String() + "}" }

// LogValue implements slog.LogValuer without the secret.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// splitTokenEntry splits name:secret:scopes at its first and last colons:
// names and scopes hold none, so a secret may.
func splitTokenEntry(entry string) (name, secret, scopes string, ok bool) {
	first, last := strings.Index(entry, ":"), strings.LastIndex(entry, ":")
	if first < 0 || first == last {
		return "", "", "", false
	}
	return entry[:first], entry[first+1 : last], entry[last+1:], true
}

// TokenSecrets returns the secrets of a token list as ParseTokens reads
// them, well formed or not, for tools that scrub them from text.
func TokenSecrets(list string) []string {
	var out []string
	for _, entry := range strings.Split(list, ",") {
		if _, secret, _, ok := splitTokenEntry(strings.TrimSpace(entry)); ok && secret != "" {
			out = append(out, secret)
		}
	}
	return out
}

// ParseTokens parses a comma-separated list of name:secret:scope1+scope2
// entries, as EVENTBUS_API_TOKENS holds. Blank entries are skipped; an empty
// list gives no tokens (auth off). Names and secrets must be unique.
// Secrets are at least MinSecretLen printable ASCII characters, without
// spaces or commas. Errors wrap ErrBadToken and name the entry by its place
// and name, never by its secret.
func ParseTokens(list string) ([]Token, error) {
	var tokens []Token
	names := map[string]bool{}
	secrets := map[string]bool{}
	for i, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, secret, scopeList, ok := splitTokenEntry(entry)
		if !ok {
			// Without two colons we cannot tell which part is the secret, so
			// none of the entry is quoted.
			return nil, fmt.Errorf("%w: entry %d is not name:token:scopes (for example ci:<token>:publish+read)", ErrBadToken, i+1)
		}
		if err := checkTokenName(name); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if err := checkSecret(secret); err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i+1, name, err)
		}
		scopes, err := parseScopes(scopeList)
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i+1, name, err)
		}
		if names[name] {
			return nil, fmt.Errorf("%w: entry %d: the name %q is used twice; give each token its own name", ErrBadToken, i+1, name)
		}
		if secrets[secret] {
			return nil, fmt.Errorf("%w: entry %d (%s): the same token is given twice; give each entry its own token", ErrBadToken, i+1, name)
		}
		names[name], secrets[secret] = true, true
		tokens = append(tokens, Token{Name: name, Scopes: scopes, secret: secret})
	}
	return tokens, nil
}

func checkTokenName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w: a token name must be 1 to %d characters", ErrBadToken, maxNameLen)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: token name %q may hold only letters, digits, '-', '_' and '.'", ErrBadToken, name)
		}
	}
	return nil
}

func checkSecret(secret string) error {
	if len(secret) < MinSecretLen || len(secret) > maxSecretLen {
		return fmt.Errorf("%w: the token must be %d to %d characters long (it is %d); generate one with `openssl rand -hex 32`",
			ErrBadToken, MinSecretLen, maxSecretLen, len(secret))
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' || c == ',' {
			return fmt.Errorf("%w: the token may hold only printable ASCII characters without spaces or commas", ErrBadToken)
		}
	}
	return nil
}

func parseScopes(list string) (Scope, error) {
	var s Scope
	for _, word := range strings.Split(list, "+") {
		found := false
		for _, n := range scopeNames {
			if word == n.name {
				s |= n.scope
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("%w: unknown scope %q; use publish, read or admin, joined by '+'", ErrBadToken, word)
		}
	}
	return s, nil
}

// Verifier matches presented secrets against a set of tokens.
type Verifier struct {
	tokens  []Token
	digests [][sha256.Size]byte
}

// NewVerifier returns a verifier of tokens, which must come from NewToken or
// ParseTokens and have distinct secrets. No tokens: auth is off.
func NewVerifier(tokens []Token) (*Verifier, error) {
	v := &Verifier{tokens: tokens}
	seen := map[[sha256.Size]byte]bool{}
	for _, t := range tokens {
		if t.secret == "" {
			return nil, fmt.Errorf("%w: token %q has no secret; build tokens with NewToken or ParseTokens", ErrBadToken, t.Name)
		}
		d := sha256.Sum256([]byte(t.secret))
		if seen[d] {
			return nil, fmt.Errorf("%w: token %q: the same token is configured twice", ErrBadToken, t.Name)
		}
		seen[d] = true
		v.digests = append(v.digests, d)
	}
	return v, nil
}

// Enabled reports whether there are tokens to check, that is whether auth
// is on.
func (v *Verifier) Enabled() bool { return len(v.tokens) > 0 }

// Verify returns the token whose secret is secret.
//
// The presented secret is hashed and compared with the hash of every
// configured token, whether or not one already matched: the time taken does
// not depend on which token matched, or on how much of one did (hashing
// equalises lengths, which ConstantTimeCompare would otherwise leak).
func (v *Verifier) Verify(secret string) (Token, bool) {
	presented := sha256.Sum256([]byte(secret))
	match := -1
	for i := range v.digests {
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(presented[:], v.digests[i][:]), i, match)
	}
	if match < 0 {
		return Token{}, false
	}
	return v.tokens[match], true
}

// WellFormedSecret reports whether s could be a token at all: it bounds the
// work done on garbage and rejects spaces and control characters.
func WellFormedSecret(s string) bool {
	if s == "" || len(s) > maxSecretLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
