package connurl_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/internal/connurl"
	"github.com/edupulse/eventbus/internal/testenv"
)

func givenPasswords() []string { return testenv.SpecialPasswords(false) }

func showsSecret(text string) bool {
	_, shows := testenv.ShowsSecret(text)
	return shows
}

func TestRedactHidesEveryPassword(t *testing.T) {
	for _, pw := range givenPasswords() {
		for _, raw := range []string{
			"postgres://quiz:" + pw + "@db.internal:5432/quiz?sslmode=disable",
			"postgres://quiz:" + pw + "@db-1:5432,db-2:5432/quiz",
			"amqp://guest:" + pw + "@rabbit:5672/",
			"postgres://quiz@db/quiz?password=" + pw,
			// Unencoded, the password's '/' would end Go's host early.
			"postgres://quiz:" + pw + "/x@db/quiz",
			"postgres://quiz:" + pw + "/x@db/quiz?password=" + pw,
		} {
			if got := connurl.Redact(raw); showsSecret(got) {
				t.Errorf("Redact(%q) = %q: shows the password", raw, got)
			}
		}
	}
}

func TestPasswordsScrubsEveryForm(t *testing.T) {
	for _, pw := range givenPasswords() {
		raw := "postgres://quiz:" + pw + "@db:5432/quiz"
		dec, err := url.PathUnescape(pw)
		if err != nil {
			dec = pw
		}
		// Every way a message could quote the password.
		text := strings.Join([]string{pw, dec, url.QueryEscape(dec), url.PathEscape(dec), url.UserPassword("u", dec).String()}, " | ")
		for _, form := range connurl.Passwords(raw) {
			text = strings.ReplaceAll(text, form, connurl.Redacted)
		}
		if showsSecret(text) {
			t.Errorf("the forms of %q that connurl.Passwords(%q) lists leave %q", pw, raw, text)
		}
	}
}

func TestCheckUserInfo(t *testing.T) {
	for _, tc := range []struct {
		raw       string
		ambiguous bool
	}{
		{"postgres://quiz:s3cret@db:5432/q", false},
		{"postgres://quiz:p%40ss%2Fw@db/q", false},
		{"postgres://quiz:p:ss@db/q", false},
		{"postgres://db/q", false},
		{"postgres://quiz:pw@a:5432,b:5432/q?target_session_attrs=read-write", false},
		{"amqp://guest:guest@rabbit:5672/%2F", false},
		{"host=db password=p@ss/w", false},
		{"postgres://quiz:p@ss@db/q", true},
		{"postgres://quiz:1234/ss@db/q", true},
		{"postgres://quiz:1234?ss@db/q", true},
		{"postgres://quiz:1234#ss@db/q", true},
		{"amqp://guest:p@ss@rabbit/", true},
		{"postgres://db/q?application_name=a@b", true}, // percent-encode it: %40
		{"postgres://app:p@ss/word@db/x", true},        // the password p@ss/word, unencoded
		{"postgres://app:pw@db/q?application_name=a@b", true},
		{"amqp://guest:p@ss/w@rabbit/", true},
	} {
		if got := connurl.CheckUserInfo(tc.raw) != nil; got != tc.ambiguous {
			t.Errorf("CheckUserInfo(%q) ambiguous = %v, want %v", tc.raw, got, tc.ambiguous)
		}
	}
}
