package auth_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/auth"
)

func TestParseTokens(t *testing.T) {
	tokens, err := auth.ParseTokens(" ci:0123456789abcdef:publish+read ,, ops:with:colons:inside-0123:admin,")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 || tokens[0].Name != "ci" || tokens[0].Scopes != auth.ScopePublish|auth.ScopeRead ||
		tokens[1].Name != "ops" || tokens[1].Scopes != auth.ScopeAdmin {
		t.Fatalf("tokens %v", tokens)
	}
	if !auth.ScopeAdmin.Allows(auth.ScopeRead) || auth.ScopeRead.Allows(auth.ScopePublish) {
		t.Fatal("admin must allow everything, read not publish")
	}
	if tokens, err := auth.ParseTokens("  "); err != nil || len(tokens) != 0 {
		t.Fatalf("an empty list: %v %v", tokens, err)
	}
}

func TestBadTokensAreRefusedWithoutEchoingThem(t *testing.T) {
	const secret = "Sup3r-SECRET-value"
	for _, list := range []string{
		secret,                        // no name, no scopes
		"ci:" + secret,                // no scopes
		":" + secret + ":read",        // no name
		"c i:" + secret + ":read",     // bad name
		"ci:" + secret[:8] + ":read",  // too short
		"ci:" + secret + ":",          // empty scope
		"ci:" + secret + ":read+sudo", // unknown scope
		"ci:" + secret + "\x01:read",  // control character
		"ci:" + secret + "1:read,ci:" + secret + "2:read",
		"a:" + secret + ":read,b:" + secret + ":admin",
	} {
		_, err := auth.ParseTokens(list)
		if !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("ParseTokens(%q): %v, want ErrBadToken", list, err)
			continue
		}
		if strings.Contains(err.Error(), secret[:8]) {
			t.Errorf("ParseTokens(%q): the error shows the secret: %v", list, err)
		}
	}
}

func TestTokensPrintWithoutTheirSecret(t *testing.T) {
	const secret = "Sup3r-SECRET-value"
	tok, err := auth.NewToken("ci", secret, auth.ScopePublish|auth.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(tok)
	out := fmt.Sprintf("%v %+v %#v %s %v", tok, tok, tok, tok, []auth.Token{tok}) + string(j)
	if strings.Contains(out, secret) {
		t.Fatalf("secret printed: %s", out)
	}
	if !strings.Contains(out, "ci(publish+read)") || !strings.Contains(string(j), `"Scopes":"publish+read"`) {
		t.Fatalf("output %s", out)
	}
}
