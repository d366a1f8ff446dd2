package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/internal/testenv"
)

func TestPasswords(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{"postgres://quiz:s3cret@db:5432/q", []string{"s3cret"}},
		{"postgres://quiz:p%40ss@db/q", []string{"p%40ss", "p@ss"}},
		{"postgres://quiz@db/q?password=qp1&sslmode=require", []string{"qp1"}},
		{"amqp://guest:guest@rabbit:5672/", []string{"guest"}},
		{"host=db user=quiz password='sec ret' dbname=q", []string{"sec ret", "sec%20ret", "sec+ret"}},
		{"host=db user=quiz password=plain dbname=q", []string{"plain"}},
		{"postgres://db/q", nil},
	} {
		got := Passwords(tc.raw)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("Passwords(%q) = %q, lacks %q", tc.raw, got, w)
			}
		}
		if len(tc.want) == 0 && len(got) > 0 {
			t.Errorf("Passwords(%q) = %q, want none", tc.raw, got)
		}
	}
}

// TestSpecialPasswordsNeverShow loads database and broker URLs (one, and
// lists) whose passwords hold the characters URLs give a meaning to, as
// they are and percent-encoded, and checks that no part of a password shows
// in the error, or in the configuration as it prints and logs.
func TestSpecialPasswordsNeverShow(t *testing.T) {
	for _, pw := range testenv.SpecialPasswords(false) {
		for _, vars := range []map[string]string{
			{EnvDatabaseURL: "postgres://quiz:" + pw + "@127.0.0.1:5432/quiz"},
			{EnvDatabaseURL: "postgres://quiz:" + pw + "@db-1:5432,db-2:5432/quiz?target_session_attrs=read-write"},
			{EnvDatabaseURL: "postgres://quiz@127.0.0.1/quiz?password=" + pw},
			{EnvAMQPURL: "amqp://guest:" + pw + "@127.0.0.1:5672/"},
			{EnvAMQPURL: "amqp://guest:" + pw + "@rabbit-1:5672/,amqp://guest:" + pw + "@rabbit-2:5672/"},
		} {
			c, err := Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, nil)
			var out bytes.Buffer
			if err != nil {
				out.WriteString(err.Error())
			} else {
				fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n", c, c, c, c)
				slog.New(slog.NewJSONHandler(&out, nil)).Info("start", "config", c)
				j, _ := json.Marshal(c)
				out.Write(j)
			}
			if part, shows := testenv.ShowsSecret(out.String()); shows {
				t.Errorf("%v: %q shows:\n%s", vars, part, out.String())
			}
		}
	}
}

// TestAmbiguousURLsAreRefused: a password with an unescaped '@', or a '/',
// '?' or '#' before the '@', is read differently by Go, libpq and amqp091;
// the error says to percent-encode it.
func TestAmbiguousURLsAreRefused(t *testing.T) {
	for _, vars := range []map[string]string{
		{EnvDatabaseURL: "postgres://quiz:Alpha7@Bravo8@127.0.0.1:5432/quiz"},
		{EnvDatabaseURL: "postgres://quiz:1234/Bravo8@127.0.0.1:5432/quiz"},
		{EnvAMQPURL: "amqp://guest:1234/Bravo8@127.0.0.1:5672/"},
		{EnvAMQPURL: "amqp://guest:Alpha7,Bravo8@127.0.0.1:5672/"},
	} {
		_, err := Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, nil)
		if err == nil || !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("%v: err %v, want one that says to percent-encode", vars, err)
		}
	}
}
