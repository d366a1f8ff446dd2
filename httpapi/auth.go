package httpapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/edupulse/eventbus/auth"
)

// authenticator checks bearer tokens.
type authenticator struct{ verifier *auth.Verifier }

func newAuthenticator(tokens []auth.Token) (*authenticator, error) {
	v, err := auth.NewVerifier(tokens)
	if err != nil {
		return nil, err
	}
	return &authenticator{verifier: v}, nil
}

func (a *authenticator) enabled() bool { return a.verifier.Enabled() }

// authenticate finds the token in the request's Authorization header and
// checks that it grants want. It returns the token, or the problem to
// answer. auth.Verifier.Verify takes the same time whichever token matches.
func (a *authenticator) authenticate(r *http.Request, want auth.Scope) (auth.Token, *Problem) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return auth.Token{}, unauthorized("", "this route needs a token: send the header \"Authorization: Bearer <token>\"")
	}
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !auth.WellFormedSecret(secret) {
		return auth.Token{}, unauthorized("invalid_request", "the Authorization header must be \"Bearer <token>\"")
	}
	t, ok := a.verifier.Verify(secret)
	if !ok {
		return auth.Token{}, unauthorized("invalid_token", "the token is not valid; check the token you were given")
	}
	if !t.Scopes.Allows(want) {
		needs := want.String()
		if want != auth.ScopeAdmin {
			needs += " (or admin)"
		}
		p := newProblem(http.StatusForbidden, ProblemForbidden,
			fmt.Sprintf("the token %q has the scopes %s; this route needs %s", t.Name, t.Scopes, needs))
		p.header = http.Header{"Www-Authenticate": {fmt.Sprintf(`Bearer realm="eventbus", error="insufficient_scope", scope=%q`, want.String())}}
		return t, p
	}
	return t, nil
}

func unauthorized(code, detail string) *Problem {
	p := newProblem(http.StatusUnauthorized, ProblemUnauthorized, detail)
	challenge := `Bearer realm="eventbus"`
	if code != "" {
		challenge += `, error="` + code + `"`
	}
	p.header = http.Header{"Www-Authenticate": {challenge}}
	return p
}
