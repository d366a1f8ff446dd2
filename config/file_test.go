package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
)

// writeFile writes a configuration file with mode perm in a fresh
// directory and returns its path.
func writeFile(t *testing.T, content string, perm fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eventbus.yaml")
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// parseFlags defines the configuration flags and parses args.
func parseFlags(t *testing.T, args ...string) *config.Flags {
	t.Helper()
	fs := pflag.NewFlagSet("eventbus", pflag.ContinueOnError)
	flags := config.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return flags
}

// layerValues are a setting's values in the file, the environment and the
// flags, and how `eventbus config` shows each (masked).
type layerValues struct {
	key, flag                      string
	file, env, flagValue           string
	fileShown, envShown, flagShown string
	defaultShown                   string
}

var layered = []layerValues{
	{config.EnvDatabaseURL, config.FlagDatabaseURL,
		"postgres://app:file-pw@file-db/events", "postgres://app:env-pw@env-db/events", "postgres://app:flag-pw@flag-db/events",
		"postgres://app:xxxxx@file-db/events", "postgres://app:xxxxx@env-db/events", "postgres://app:xxxxx@flag-db/events", ""},
	{config.EnvDataDir, config.FlagDataDir, "/file/data", "/env/data", "/flag/data", "/file/data", "/env/data", "/flag/data", config.DefaultDataDir},
	{config.EnvAMQPURL, config.FlagAMQPURL,
		"amqp://u:file-pw@file-mq/,amqp://u:file-pw@file-mq2/", "amqp://u:env-pw@env-mq/", "amqps://u:flag-pw@flag-mq/vhost",
		"amqp://u:xxxxx@file-mq/,amqp://u:xxxxx@file-mq2/", "amqp://u:xxxxx@env-mq/", "amqps://u:xxxxx@flag-mq/vhost", ""},
	{config.EnvExchange, config.FlagExchange, "file.events", "env.events", "flag.events", "file.events", "env.events", "flag.events", broker.DefaultEventsExchange},
	{config.EnvHTTPAddr, config.FlagHTTPAddr, "127.0.0.1:1001", ":1002", "[::1]:1003", "127.0.0.1:1001", ":1002", "[::1]:1003", config.DefaultHTTPAddr},
	{config.EnvAPITokens, config.FlagAPITokens,
		"f:file-token-0123456789:read", "e:env-token-0123456789:publish+read", "g:flag-token-0123456789:admin,h:flag-token-9876543210:read",
		"f:xxxxx:read", "e:xxxxx:publish+read", "g:xxxxx:admin,h:xxxxx:read", ""},
	{config.EnvMasterKey, config.FlagMasterKey, testKeys[0], testKeys[1], testKeys[2] + "," + testKeys[0], "xxxxx", "xxxxx", "xxxxx,xxxxx", ""},
	{config.EnvMasterKeyFile, config.FlagMasterKeyFile, keyFiles[0], keyFiles[1], keyFiles[2], keyFiles[0], keyFiles[1], keyFiles[2], ""},
	{config.EnvRequestTimeout, config.FlagRequestTimeout, "1s", "2s", "3s", "1s", "2s", "3s", "5s"},
	{config.EnvShutdownTimeout, config.FlagShutdownTimeout, "1m", "2m0s", "3m", "1m0s", "2m0s", "3m0s", "15s"},
	{config.EnvRelayPartitions, config.FlagRelayPartitions, "2", "4", "8", "2", "4", "8", "1"},
	{config.EnvSchemaDir, config.FlagSchemaDir, "/file/schemas", "/env/schemas", "/flag/schemas", "/file/schemas", "/env/schemas", "/flag/schemas", ""},
	{config.EnvAllowUnknownTypes, config.FlagAllowUnknownTypes, "true", "false", "1", "true", "false", "true", "false"},
}

// TestPrecedence sets each setting in every combination of the file, the
// environment and the flags: the flag wins over the environment, which wins
// over the file, which wins over the default; `eventbus config` says which
// one gave the value, and every other setting keeps its default.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	for _, s := range layered {
		for layers := range 8 {
			inFile, inEnv, inFlag := layers&1 != 0, layers&2 != 0, layers&4 != 0
			name := fmt.Sprintf("%s/file=%v,env=%v,flag=%v", s.key, inFile, inEnv, inFlag)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				content, e, args := "# nothing else\n", env{}, []string{}
				if inFile {
					content += s.key + ": '" + s.file + "'\n"
				}
				if inEnv {
					e[s.key] = s.env
				}
				if inFlag {
					args = append(args, "--"+s.flag+"="+s.flagValue)
				}
				args = append(args, "--config", writeFile(t, content, 0o600))
				c, settings, err := config.Explain(e.lookup, parseFlags(t, args...))
				if err != nil {
					t.Fatal(err)
				}
				wantValue, wantOrigin, wantLine := s.defaultShown, config.OriginDefault, 0
				switch {
				case inFlag:
					wantValue, wantOrigin = s.flagShown, config.OriginFlag
				case inEnv:
					wantValue, wantOrigin = s.envShown, config.OriginEnv
				case inFile:
					wantValue, wantOrigin, wantLine = s.fileShown, config.OriginFile, 2
				}
				if len(settings) != len(layered) {
					t.Fatalf("%d settings, want %d", len(settings), len(layered))
				}
				for i, got := range settings {
					if got.Key != layered[i].key {
						t.Errorf("setting %d is %s, want %s", i, got.Key, layered[i].key)
					}
					want := config.Setting{Key: got.Key, Value: layered[i].defaultShown, Origin: config.OriginDefault}
					if got.Key == s.key {
						want = config.Setting{Key: s.key, Value: wantValue, Origin: wantOrigin, Line: wantLine}
					}
					if got != want {
						t.Errorf("got %+v, want %+v", got, want)
					}
				}
				if c.File == "" {
					t.Error("Config.File is empty")
				}
			})
		}
	}
}

// TestPrecedenceEmptyValuesAreUnset: an empty value in the file, or in the
// environment, lets the layer below show through, as an unset one.
func TestPrecedenceEmptyValuesAreUnset(t *testing.T) {
	t.Parallel()
	path := writeFile(t, config.EnvExchange+": ''\n"+config.EnvHTTPAddr+":\n"+config.EnvDataDir+": /file/data\n", 0o600)
	c, settings, err := config.Explain(env{config.EnvDataDir: " ", config.EnvConfig: path}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Exchange != broker.DefaultEventsExchange || c.HTTPAddr != config.DefaultHTTPAddr || c.DataDir != "/file/data" {
		t.Fatalf("config %#v", c)
	}
	for _, s := range settings {
		if s.Key == config.EnvDataDir && (s.Origin != config.OriginFile || s.Line != 3) {
			t.Errorf("%+v: want from the file, line 3", s)
		}
	}
}

// TestConfigFileFromEnvironmentOrFlag: EVENTBUS_CONFIG names the file;
// --config overrides it, and --config "" reads none.
func TestConfigFileFromEnvironmentOrFlag(t *testing.T) {
	t.Parallel()
	fromEnv := writeFile(t, config.EnvExchange+": env.file\n", 0o600)
	fromFlag := writeFile(t, config.EnvExchange+": flag.file\n", 0o600)
	e := env{config.EnvConfig: fromEnv}
	for _, tc := range []struct {
		args     []string
		exchange string
		file     string
	}{
		{nil, "env.file", fromEnv},
		{[]string{"--config", fromFlag}, "flag.file", fromFlag},
		{[]string{"--config="}, broker.DefaultEventsExchange, ""},
	} {
		c, err := config.Load(e.lookup, parseFlags(t, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		if c.Exchange != tc.exchange || c.File != tc.file {
			t.Errorf("%q: exchange %q from %q; want %q from %q", tc.args, c.Exchange, c.File, tc.exchange, tc.file)
		}
	}
	// Without flags (a program embedding the service), EVENTBUS_CONFIG
	// alone.
	if c, err := config.Load(e.lookup, nil); err != nil || c.Exchange != "env.file" {
		t.Fatalf("%v %#v", err, c)
	}
}

func TestEmptyFilesAreFine(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "\n\n", "# only a comment\n", "---\n", "~\n", "{}\n"} {
		c, err := config.Load(env{config.EnvConfig: writeFile(t, content, 0o644)}.lookup, nil)
		if err != nil {
			t.Errorf("%q: %v", content, err)
			continue
		}
		if c.Exchange != broker.DefaultEventsExchange || !c.Embedded() {
			t.Errorf("%q: config %#v", content, c)
		}
	}
}

func TestMissingFileNamesThePath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "no-such.yaml")
	_, err := config.Load(env{}.lookup, parseFlags(t, "--config", path))
	if !errors.Is(err, config.ErrInvalid) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v; want ErrInvalid and fs.ErrNotExist naming %s", err, path)
	}
	_, err = config.Load(env{config.EnvConfig: t.TempDir()}.lookup, nil)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}

// TestStrictDecoding: anything but a mapping of known settings to single
// values is refused, with the file, the line and the key, and no value.
func TestStrictDecoding(t *testing.T) {
	t.Parallel()
	const secret = "S3cret-in-the-file-77"
	for _, tc := range []struct {
		name, content string
		line          int
		want          string
	}{
		{"unknown key", "EVENTBUS_EXCHANGE: a.b\nEVENTBUS_COLOUR: " + secret + "\n", 2, `unknown key "EVENTBUS_COLOUR"; the keys are EVENTBUS_DATABASE_URL, `},
		{"lower-case key", "# the store\ndatabase_url: postgres://u:" + secret + "@db/x\n", 2, "did you mean EVENTBUS_DATABASE_URL?"},
		{"flag name as key", "http-addr: :80\n", 1, "did you mean EVENTBUS_HTTP_ADDR?"},
		{"key given twice", "EVENTBUS_EXCHANGE: a.b\n\nEVENTBUS_EXCHANGE: " + secret + "\n", 3, "EVENTBUS_EXCHANGE is set twice (first on line 1)"},
		{"list value", "EVENTBUS_AMQP_URL:\n  - amqp://u:" + secret + "@a/\n  - amqp://b/\n", 1, "EVENTBUS_AMQP_URL must be one value, written as in the environment (a list separated by commas), not a list"},
		{"mapping value", "EVENTBUS_EXCHANGE: a.b\nEVENTBUS_HTTP_ADDR: {host: x, port: " + secret + "}\n", 2, "EVENTBUS_HTTP_ADDR must be one value"},
		{"not a mapping", "- EVENTBUS_EXCHANGE\n", 1, "must be a mapping of settings"},
		{"a scalar", secret + "\n", 1, "must be a mapping of settings"},
		{"mapping as key", "? {a: b}\n: c\n", 1, "a key must be a setting's name"},
		{"two documents", "EVENTBUS_EXCHANGE: a.b\n---\nEVENTBUS_EXCHANGE: " + secret + "\n", 2, "a second YAML document"},
		{"config file in itself", "EVENTBUS_CONFIG: other.yaml\n", 1, "EVENTBUS_CONFIG names the configuration file"},
		{"merge key", "base: &b\n  EVENTBUS_EXCHANGE: a.b\n<<: *b\n", 1, `unknown key "base"`},
		// A valid file whose value is not: the check's message, with the
		// file and the line.
		{"bad exchange", "EVENTBUS_DATA_DIR: /d\nEVENTBUS_EXCHANGE: amq.x\n", 2, "reserved by RabbitMQ"},
		{"timeout without unit", "EVENTBUS_REQUEST_TIMEOUT: 5\n", 1, "EVENTBUS_REQUEST_TIMEOUT (or --request-timeout) \"5\" needs a unit"},
		{"bad database URL", "\nEVENTBUS_DATABASE_URL: mysql://root:" + secret + "@db/x\n", 2, "must start with postgres://"},
		{"bad token", "EVENTBUS_API_TOKENS: ci:" + secret + ":fly\n", 1, `unknown scope "fly"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tc.content, 0o600)
			_, err := config.Load(env{config.EnvConfig: path}.lookup, nil)
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if where := fmt.Sprintf("%s:%d: ", path, tc.line); !strings.HasPrefix(err.Error(), where) {
				t.Errorf("error %q does not start with %q", err, where)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the value %q", err, secret)
			}
		})
	}
	// Not YAML at all: the parser's message, with the file.
	path := writeFile(t, "EVENTBUS_EXCHANGE: \"a.b\n", 0o600)
	if _, err := config.Load(env{config.EnvConfig: path}.lookup, nil); !errors.Is(err, config.ErrInvalid) ||
		!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("broken YAML: %v", err)
	}
	// A value overridden by the environment is not checked where it is
	// overridden: the environment's is the one used.
	path = writeFile(t, "EVENTBUS_EXCHANGE: amq.x\n", 0o600)
	if c, err := config.Load(env{config.EnvConfig: path, config.EnvExchange: "ok.events"}.lookup, nil); err != nil || c.Exchange != "ok.events" {
		t.Fatalf("%v %#v", err, c)
	}
}

// TestFileWithSecretsMustBePrivate: a file holding a password or a token
// that group or others may read is refused, as ssh refuses such a key; a
// file owned by root may be readable by its group; a file without secrets
// may be read by all; a file anybody may write is refused.
func TestFileWithSecretsMustBePrivate(t *testing.T) {
	t.Parallel()
	const secret = "pw-S3cret-0042"
	secretFiles := map[string]string{
		config.EnvDatabaseURL: "EVENTBUS_DATABASE_URL: postgres://app:" + secret + "@db/events\n",
		"DSN":                 "EVENTBUS_DATABASE_URL: host=db password=" + secret + "\n",
		config.EnvAMQPURL:     "EVENTBUS_AMQP_URL: amqp://a@r1/,amqp://u:" + secret + "@r2/\n",
		config.EnvAPITokens:   "EVENTBUS_API_TOKENS: ci:" + secret + "-0123456789:read\n",
	}
	for what, content := range secretFiles {
		for _, perm := range []fs.FileMode{0o644, 0o604, 0o660, 0o620} {
			path := writeFile(t, content, perm)
			_, err := config.Load(env{config.EnvConfig: path}.lookup, nil)
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "chmod 600 "+path) ||
				!strings.Contains(err.Error(), fmt.Sprintf("mode %04o", perm)) {
				t.Errorf("%s, mode %04o: %v; want a refusal saying chmod 600", what, perm, err)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		}
		for _, perm := range []fs.FileMode{0o600, 0o400} {
			if _, err := config.Load(env{config.EnvConfig: writeFile(t, content, perm)}.lookup, nil); err != nil {
				t.Errorf("%s, mode %04o: %v", what, perm, err)
			}
		}
		// Group-readable: allowed when root owns the file, refused
		// otherwise.
		path := writeFile(t, content, 0o640)
		_, err := config.Load(env{config.EnvConfig: path}.lookup, nil)
		if os.Geteuid() == 0 {
			if err != nil {
				t.Errorf("%s, mode 0640 owned by root: %v", what, err)
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			_, err = config.Load(env{config.EnvConfig: path}.lookup, nil)
		}
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "mode 0640") {
			t.Errorf("%s, mode 0640 not owned by root: %v; want a refusal", what, err)
		}
	}
	for _, content := range []string{
		"EVENTBUS_DATABASE_URL: postgres://app@db/events\nEVENTBUS_AMQP_URL: amqp://r1/\nEVENTBUS_API_TOKENS: ''\n",
		"EVENTBUS_HTTP_ADDR: :8080\n",
	} {
		if _, err := config.Load(env{config.EnvConfig: writeFile(t, content, 0o644)}.lookup, nil); err != nil {
			t.Errorf("a file without secrets, mode 0644: %v", err)
		}
	}
	path := writeFile(t, "EVENTBUS_HTTP_ADDR: :8080\n", 0o666)
	if _, err := config.Load(env{config.EnvConfig: path}.lookup, nil); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "writable by anybody") {
		t.Errorf("a file anybody may write: %v", err)
	}
	// Secrets overridden by the environment still count: they are in the
	// file for anybody to read.
	path = writeFile(t, secretFiles[config.EnvDatabaseURL], 0o644)
	if _, err := config.Load(env{config.EnvConfig: path, config.EnvDatabaseURL: "postgres://db/x"}.lookup, nil); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("overridden secrets in a readable file: %v", err)
	}
}

// TestFileValues: what the file sets, for scrubbing secrets from text; nil
// when there is no file or it cannot be read.
func TestFileValues(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "EVENTBUS_DATABASE_URL: postgres://app:pw-1234@db/x\nEVENTBUS_EXCHANGE:\n", 0o644)
	got := config.FileValues(env{config.EnvConfig: path}.lookup, nil)
	if got[config.EnvDatabaseURL] != "postgres://app:pw-1234@db/x" || len(got) != 2 {
		t.Fatalf("FileValues = %q", got)
	}
	if got := config.FileValues(env{}.lookup, parseFlags(t, "--config", filepath.Join(t.TempDir(), "none.yaml"))); got != nil {
		t.Fatalf("FileValues of a missing file = %q", got)
	}
	if got := config.FileValues(env{}.lookup, nil); got != nil {
		t.Fatalf("FileValues without a file = %q", got)
	}
}

func TestLogNamesTheFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "EVENTBUS_EXCHANGE: a.b\n", 0o600)
	c, err := config.Load(env{config.EnvConfig: path}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	slog.New(slog.NewTextHandler(&out, nil)).Info("start", "config", c)
	if !strings.Contains(out.String(), "config.config_file="+path) {
		t.Fatalf("log lacks the file: %s", out.String())
	}
}

// TestExampleFileLoads: the example in deploy/ is a valid file, and sets
// what it says.
func TestExampleFileLoads(t *testing.T) {
	t.Parallel()
	const example = "../deploy/eventbus.example.yaml"
	c, settings, err := config.Explain(env{config.EnvConfig: example}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	fromFile := 0
	for _, s := range settings {
		if s.Origin == config.OriginFile {
			fromFile++
		}
	}
	if fromFile < 4 || c.HTTPAddr != ":8080" {
		t.Fatalf("the example sets %d settings, HTTP address %q: %+v", fromFile, c.HTTPAddr, settings)
	}
}

// TestMasterKeyIsCheckedAndSecret: a master key that is not base64 of 32
// bytes, both settings at once, and a key file others may read are refused
// with a message that names the setting and never shows the key.
func TestMasterKeyIsCheckedAndSecret(t *testing.T) {
	t.Parallel()
	readable := filepath.Join(t.TempDir(), "open.key")
	if err := os.WriteFile(readable, []byte(testKeys[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	short := "c2hvcnQta2V5LXZhbHVl" // base64 of 15 bytes
	for _, tc := range []struct {
		name string
		env  env
		want string
	}{
		{"not base64", env{config.EnvMasterKey: "not*base64*at*all"}, config.EnvMasterKey + ": key 1 is not standard base64"},
		{"short", env{config.EnvMasterKey: testKeys[0] + "," + short}, config.EnvMasterKey + ": key 2 is 15 bytes"},
		{"both", env{config.EnvMasterKey: testKeys[0], config.EnvMasterKeyFile: keyFiles[0]}, "are both set"},
		{"readable file", env{config.EnvMasterKeyFile: readable}, "may be read by others than its owner (mode 0644)"},
		{"missing file", env{config.EnvMasterKeyFile: readable + ".gone"}, config.EnvMasterKeyFile},
	} {
		_, err := config.Load(tc.env.lookup, nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrInvalid saying %q", tc.name, err, tc.want)
			continue
		}
		for _, k := range append(testKeys, short) {
			if strings.Contains(err.Error(), k) {
				t.Errorf("%s: the error shows a key: %v", tc.name, err)
			}
		}
	}
	c, err := config.Load(env{config.EnvMasterKeyFile: keyFiles[1]}.lookup, nil)
	if err != nil || strings.TrimSpace(c.MasterKey) != testKeys[1] {
		t.Fatalf("key file: %v", err)
	}
	for _, shown := range []string{c.String(), fmt.Sprintf("%#v", c)} {
		if strings.Contains(shown, testKeys[1]) {
			t.Errorf("the configuration shows the master key: %s", shown)
		}
	}
}
