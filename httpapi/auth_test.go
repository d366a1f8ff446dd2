package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/httpapi"
)

func TestParseTokens(t *testing.T) {
	tokens, err := httpapi.ParseTokens(" ci:0123456789abcdef:publish+read ,, ops:with:colons:inside-0123:admin,")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 || tokens[0].Name != "ci" || tokens[0].Scopes != httpapi.ScopePublish|httpapi.ScopeRead ||
		tokens[1].Name != "ops" || tokens[1].Scopes != httpapi.ScopeAdmin {
		t.Fatalf("tokens %v", tokens)
	}
	if !httpapi.ScopeAdmin.Allows(httpapi.ScopeRead) || httpapi.ScopeRead.Allows(httpapi.ScopePublish) {
		t.Fatal("admin must allow everything, read not publish")
	}
	if tokens, err := httpapi.ParseTokens("  "); err != nil || len(tokens) != 0 {
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
		_, err := httpapi.ParseTokens(list)
		if !errors.Is(err, httpapi.ErrBadToken) {
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
	tok, err := httpapi.NewToken("ci", secret, httpapi.ScopePublish|httpapi.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(tok)
	out := fmt.Sprintf("%v %+v %#v %s %v", tok, tok, tok, tok, []httpapi.Token{tok}) + string(j)
	if strings.Contains(out, secret) {
		t.Fatalf("secret printed: %s", out)
	}
	if !strings.Contains(out, "ci(publish+read)") || !strings.Contains(string(j), `"Scopes":"publish+read"`) {
		t.Fatalf("output %s", out)
	}
	if _, err := httpapi.New(httpapi.Config{Bus: nil}); err == nil {
		t.Fatal("New without a bus must fail")
	}
}
