package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/config"
)

// TestServeWithConfigFile runs serve on the embedded default with its
// listen address and data directory from a configuration file, given by
// --config and by EVENTBUS_CONFIG; `eventbus config` shows where each
// setting came from.
func TestServeWithConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// 127.0.0.2: an address no default and no other test uses, so that
	// listening there shows the file was read.
	path := filepath.Join(dir, "eventbus.yaml")
	if err := os.WriteFile(path, []byte("EVENTBUS_HTTP_ADDR: 127.0.0.2:0\nEVENTBUS_DATA_DIR: from-file-data\nEVENTBUS_EXCHANGE: file.events\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, how := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"serve", "--config", path}},
		{[]string{"EVENTBUS_CONFIG=" + path}, []string{"serve"}},
	} {
		serve := start(t, eventbusBin, dir, how.env, how.args...)
		if u := serve.url(); !strings.HasPrefix(u, "http://127.0.0.2:") {
			t.Fatalf("%v %v: serve listens on %s, not the file's 127.0.0.2", how.env, how.args, u)
		}
		if status, body := serve.call("GET", "/healthz", "", ""); status != 200 {
			t.Fatalf("GET /healthz: %d %s", status, body)
		}
		if _, err := os.Stat(filepath.Join(dir, "from-file-data")); err != nil {
			t.Fatalf("the file's data directory: %v", err)
		}
		if !strings.Contains(serve.log(), `"config_file":"`+path+`"`) {
			t.Errorf("the log does not name the configuration file:\n%s", serve.log())
		}
		if code := serve.stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("serve exited %d; its log:\n%s", code, serve.log())
		}
	}

	// eventbus config: flag over environment over file over default.
	r := mustRunCLI(t, dir, []string{"EVENTBUS_CONFIG=" + path, "EVENTBUS_DATA_DIR=/env/data"}, "config", "--exchange", "flag.events")
	var shown effectiveConfig
	if err := yaml.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatalf("eventbus config printed no YAML: %v\n%s", err, r.stdout)
	}
	want := map[string]config.Setting{
		config.EnvHTTPAddr: {Value: "127.0.0.2:0", Origin: config.OriginFile, Line: 1},
		config.EnvDataDir:  {Value: "/env/data", Origin: config.OriginEnv},
		config.EnvExchange: {Value: "flag.events", Origin: config.OriginFlag},
		config.EnvAMQPURL:  {Value: "", Origin: config.OriginDefault},
	}
	if shown.File != path {
		t.Errorf("config_file %q, want %q", shown.File, path)
	}
	for key, w := range want {
		if got := shown.Settings[key]; got != w {
			t.Errorf("%s: %+v, want %+v", key, got, w)
		}
	}
	r = mustRunCLI(t, dir, nil, "config", "--config", path, "--output", "json")
	var asJSON effectiveConfig
	if err := json.Unmarshal([]byte(r.stdout), &asJSON); err != nil || len(asJSON.Settings) != 10 ||
		asJSON.Settings[config.EnvExchange] != (config.Setting{Value: "file.events", Origin: config.OriginFile, Line: 3}) {
		t.Fatalf("eventbus config --output json: %v\n%s", err, r.stdout)
	}

	// A missing file, a bad --output: usage errors, with the path.
	missing := filepath.Join(dir, "missing.yaml")
	for _, args := range [][]string{{"serve", "--config", missing}, {"config", "--config", missing}, {"events", "--config", missing}} {
		r = runCLI(t, dir, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, missing) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("eventbus %s: want exit 2 and one line naming %s; %v", strings.Join(args, " "), missing, r)
		}
	}
	if r = runCLI(t, dir, nil, "config", "--output", "toml"); r.code != 2 || !strings.Contains(r.stderr, "use yaml or json") {
		t.Errorf("config --output toml: %v", r)
	}
}

// TestServeRefusesReadableFileWithSecrets: a file holding a password that
// others may read stops serve before it starts, without showing the
// password; once private, the password shows nowhere either.
func TestServeRefusesReadableFileWithSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const password = "file-Secret-pw-5e6f"
	path := filepath.Join(dir, "eventbus.yaml")
	if err := os.WriteFile(path, []byte("EVENTBUS_HTTP_ADDR: 127.0.0.1:0\nEVENTBUS_AMQP_URL: amqp://guest:"+password+"@127.0.0.1:1/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, dir, nil, "serve", "--config", path)
	if r.code != 2 || !strings.Contains(r.stderr, "chmod 600") || strings.Contains(r.stdout+r.stderr, password) {
		t.Fatalf("want exit 2 saying chmod 600, without the password; %v", r)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r = mustRunCLI(t, dir, nil, "config", "--config", path)
	if strings.Contains(r.stdout+r.stderr, password) || !strings.Contains(r.stdout, "amqp://guest:xxxxx@127.0.0.1:1/") {
		t.Fatalf("eventbus config: %v", r)
	}
	// A failure that quotes the broker's URL: the password stays out.
	r = runCLI(t, dir, nil, "dlq", "list", "badges", "--config", path)
	if r.code != 1 || strings.Contains(r.stdout+r.stderr, password) {
		t.Fatalf("eventbus dlq list against a closed port: want exit 1 without the password; %v", r)
	}
}

// secretChars are the characters of generated secrets: the rest of the
// output never holds 10 of them in a row (no lower-case letters, no '_',
// '.' or ':'), so that any such run in the output is a leak.
const secretChars = "ABCDEFGHIJKLMNOPQRSTUVWYZ0123456789!*~%@/?#$&+="

// secretText generates a secret of 16 to 40 secretChars, but those in
// except.
func secretText(except string) *rapid.Generator[string] {
	chars := []rune(strings.Map(func(r rune) rune {
		if strings.ContainsRune(except, r) {
			return -1
		}
		return r
	}, secretChars))
	return rapid.StringOfN(rapid.SampledFrom(chars), 16, 40, -1)
}

// TestConfigNeverShowsSecrets is a property: whatever the passwords and
// tokens, in whichever layers (file, environment, flags), and however they
// are written in the URLs, no part of them (no run of 10 characters, in any
// encoding) appears in what `eventbus config` prints, as YAML or JSON, or
// in its error.
func TestConfigNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		var secrets []string
		layers := map[string]map[string]string{"file": {}, "env": {}, "flag": {}}
		layer := func(label string) map[string]string {
			return layers[rapid.SampledFrom([]string{"file", "env", "flag"}).Draw(rt, label)]
		}
		// The database URL, in one of its forms, in one or more layers.
		for i := range rapid.IntRange(0, 3).Draw(rt, "database layers") {
			form := rapid.IntRange(0, 3).Draw(rt, "database URL form")
			except := ""
			if form == 3 {
				// Unencoded, a password's '/', '?' or '#' ends the host
				// for every parser alike: what follows is no longer the
				// password but the host, path or query, which Redact keeps
				//.
				except = "/?#"
			}
			pw := secretText(except).Draw(rt, "database password")
			secrets = append(secrets, pw)
			var dbURL string
			switch form {
			case 0:
				dbURL = (&url.URL{Scheme: "postgres", User: url.UserPassword("app", pw), Host: "db:5432", Path: "/events"}).String()
			case 1:
				dbURL = "postgres://app@db/events?sslmode=disable&password=" + url.QueryEscape(pw)
			case 2:
				dbURL = "host=db user=app password='" + pw + "' dbname=events"
			case 3:
				dbURL = "postgres://app:" + pw + "@db/events" // unencoded: perhaps refused, never shown
			}
			layer("database layer " + string(rune('0'+i)))[config.EnvDatabaseURL] = dbURL
		}
		for range rapid.IntRange(0, 2).Draw(rt, "amqp layers") {
			var urls []string
			for range rapid.IntRange(1, 3).Draw(rt, "amqp nodes") {
				pw := secretText("").Draw(rt, "amqp password")
				secrets = append(secrets, pw)
				urls = append(urls, (&url.URL{Scheme: "amqp", User: url.UserPassword("guest", pw), Host: "rabbit:5672", Path: "/"}).String())
			}
			layer("amqp layer")[config.EnvAMQPURL] = strings.Join(urls, ",")
		}
		for range rapid.IntRange(0, 2).Draw(rt, "token layers") {
			var tokens []string
			for i := range rapid.IntRange(1, 3).Draw(rt, "tokens") {
				secret := secretText("").Draw(rt, "token")
				secrets = append(secrets, secret)
				tokens = append(tokens, "svc"+string(rune('a'+i))+":"+secret+":"+rapid.SampledFrom([]string{"read", "publish+read", "admin"}).Draw(rt, "scopes"))
			}
			layer("token layer")[config.EnvAPITokens] = strings.Join(tokens, ",")
		}

		var file strings.Builder
		for key, v := range layers["file"] {
			q, _ := json.Marshal(v) // a JSON string is a YAML string
			file.WriteString(key + ": " + string(q) + "\n")
		}
		path := filepath.Join(dir, "eventbus.yaml")
		if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
			rt.Fatal(err)
		}
		args := []string{"config", "--config", path, "--output", rapid.SampledFrom([]string{"yaml", "json"}).Draw(rt, "output")}
		flagOf := map[string]string{config.EnvDatabaseURL: config.FlagDatabaseURL, config.EnvAMQPURL: config.FlagAMQPURL, config.EnvAPITokens: config.FlagAPITokens}
		for key, v := range layers["flag"] {
			args = append(args, "--"+flagOf[key]+"="+v)
		}
		environment := layers["env"]

		var stdout, stderr bytes.Buffer
		a, root := newApp(&stdout, &stderr)
		a.lookupEnv = func(key string) (string, bool) { v, ok := environment[key]; return v, ok }
		root.SetArgs(args)
		err := root.ExecuteContext(context.Background())
		out := stdout.String() + stderr.String()
		if err != nil {
			out += err.Error()
		} else if !strings.Contains(stdout.String(), "EVENTBUS_DATABASE_URL") {
			rt.Fatalf("no configuration printed: %s", out)
		}
		for _, s := range secrets {
			forms := append(config.Passwords("postgres://u:"+url.PathEscape(s)+"@h/"), s, url.QueryEscape(s), url.PathEscape(s))
			for _, form := range forms {
				for i := 0; i+10 <= len(form); i++ {
					if strings.Contains(out, form[i:i+10]) {
						rt.Fatalf("%q, part of the secret %q, shows in:\n%s", form[i:i+10], s, out)
					}
				}
			}
		}
	})
}
