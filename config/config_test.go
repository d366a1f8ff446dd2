package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
)

func TestMain(m *testing.M) {
	code := m.Run()
	_ = os.RemoveAll(keyDir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testKeys are master keys (base64 of 32 bytes), and keyFiles files of
// mode 0600 holding them, for the precedence tests.
var (
	testKeys = []string{
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
		"QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=",
	}
	keyDir, _ = os.MkdirTemp("", "eventbus-config-test-")
	keyFiles  = func() []string {
		out := make([]string, len(testKeys))
		for i, k := range testKeys {
			out[i] = filepath.Join(keyDir, fmt.Sprintf("master%d.key", i))
			_ = os.WriteFile(out[i], []byte(k+"\n"), 0o600)
		}
		return out
	}()
)

// env is a fake environment for Load.
type env map[string]string

func (e env) lookup(key string) (string, bool) {
	v, ok := e[key]
	return v, ok
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(env{}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "" || c.DataDir != "./eventbus-data" || len(c.AMQPURLs) != 0 || c.Exchange != "edupulse.events" ||
		c.HTTPAddr != "127.0.0.1:8080" || len(c.Tokens) != 0 {
		t.Fatalf("defaults %#v", c)
	}
	if !c.Embedded() || !c.InProcessBroker() || c.AuthEnabled() {
		t.Fatal("the defaults are not the embedded, unauthenticated setup")
	}
}

func TestEnvironment(t *testing.T) {
	c, err := config.Load(env{
		config.EnvDatabaseURL: "postgres://app:pw@db:5432/events",
		config.EnvDataDir:     "/var/lib/eventbus",
		config.EnvAMQPURL:     " amqp://u:p@rabbit-1:5672/ , amqps://u:p@rabbit-2:5671/vhost,",
		config.EnvExchange:    "school.events",
		config.EnvHTTPAddr:    ":9090",
		config.EnvAPITokens:   "ci:0123456789abcdef0123:publish+read, ops:fedcba9876543210fedc:admin",
	}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://app:pw@db:5432/events" || c.DataDir != "/var/lib/eventbus" || c.Exchange != "school.events" || c.HTTPAddr != ":9090" {
		t.Fatalf("config %#v", c)
	}
	if len(c.AMQPURLs) != 2 || c.AMQPURLs[0] != "amqp://u:p@rabbit-1:5672/" || c.AMQPURLs[1] != "amqps://u:p@rabbit-2:5671/vhost" {
		t.Fatalf("AMQP URLs %q", c.AMQPURLs)
	}
	if len(c.Tokens) != 2 || c.Tokens[0].Name != "ci" || c.Tokens[0].Scopes != auth.ScopePublish|auth.ScopeRead || c.Tokens[1].Scopes != auth.ScopeAdmin {
		t.Fatalf("tokens %v", c.Tokens)
	}
	// Empty values count as unset.
	c, err = config.Load(env{config.EnvExchange: " ", config.EnvDatabaseURL: ""}.lookup, nil)
	if err != nil || c.Exchange != broker.DefaultEventsExchange || !c.Embedded() {
		t.Fatalf("%v %#v", err, c)
	}
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	e := env{config.EnvExchange: "from.env", config.EnvHTTPAddr: ":1111", config.EnvDataDir: "/env/dir"}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	flags := config.AddFlags(fs)
	if err := fs.Parse([]string{"--exchange=from.flag", "--amqp-url", "amqp://guest:guest@localhost:5672/"}); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(e.lookup, flags)
	if err != nil {
		t.Fatal(err)
	}
	// Set flags win; unset flags leave the environment (not their defaults).
	if c.Exchange != "from.flag" || c.HTTPAddr != ":1111" || c.DataDir != "/env/dir" || len(c.AMQPURLs) != 1 {
		t.Fatalf("config %#v", c)
	}
}

func TestHelpShowsNoSecrets(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.AddFlags(fs)
	usage := fs.FlagUsages()
	for _, want := range []string{"--database-url", "--amqp-url", "--api-tokens", "EVENTBUS_API_TOKENS", "edupulse.events", "127.0.0.1:8080"} {
		if !strings.Contains(usage, want) {
			t.Errorf("help lacks %q:\n%s", want, usage)
		}
	}
}

func TestInvalidValuesSayWhatToDo(t *testing.T) {
	const secret = "S3CRET-pw-91"
	for _, tc := range []struct {
		name string
		env  env
		want string // in the message
	}{
		{"database scheme", env{config.EnvDatabaseURL: "mysql://root:" + secret + "@db/x"}, "must start with postgres://"},
		{"database not a URL", env{config.EnvDatabaseURL: "postgres://u:" + secret + "@db:port/x"}, "percent-encode"},
		{"database neither URL nor DSN", env{config.EnvDatabaseURL: "localhost"}, "key=value DSN"},
		{"amqp scheme", env{config.EnvAMQPURL: "http://guest:" + secret + "@rabbit/"}, "amqp://"},
		{"amqp no host", env{config.EnvAMQPURL: "amqp://rabbit:5672/,amqp://"}, "URL 2"},
		{"amqp bad port", env{config.EnvAMQPURL: "amqp://guest:" + secret + "@rabbit:http/"}, "not a valid URL"},
		{"exchange reserved", env{config.EnvExchange: "amq.topic"}, "reserved"},
		{"exchange characters", env{config.EnvExchange: "edu pulse"}, "may hold only"},
		{"http addr without port", env{config.EnvHTTPAddr: "localhost"}, "host:port"},
		{"http addr bad port", env{config.EnvHTTPAddr: "localhost:99999"}, "to 65535"},
		{"http addr named port", env{config.EnvHTTPAddr: "localhost:http"}, "to 65535"},
		{"token without scopes", env{config.EnvAPITokens: "ci:" + secret + "xxxxxxxxx"}, "entry 1 is not name:token:scopes"},
		{"token too short", env{config.EnvAPITokens: "ci:" + secret[:5] + ":publish"}, "16 to 512 characters"},
		{"token scope", env{config.EnvAPITokens: "ci:" + secret + "xxxxxxxxx:write"}, `unknown scope "write"`},
		{"token name twice", env{config.EnvAPITokens: "ci:" + secret + "xxxxxxxx1:read,ci:" + secret + "xxxxxxxx2:read"}, "used twice"},
		{"token secret twice", env{config.EnvAPITokens: "a:" + secret + "xxxxxxxx1:read,b:" + secret + "xxxxxxxx1:publish"}, "given twice"},
		{"token with a space", env{config.EnvAPITokens: "ci:" + secret + " xxxxxxxx1:read"}, "printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.env.lookup, nil)
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "EVENTBUS_") {
				t.Errorf("error %q does not name the setting", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:5]) {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:hunter2@db:5432/events?sslmode=disable", "postgres://app:xxxxx@db:5432/events?sslmode=disable"},
		{"postgres://app@db/events", "postgres://app@db/events"},
		{"postgres://db/events?user=app&password=hunter2", "postgres://db/events?password=xxxxx&user=app"},
		{"postgres://db/events?sslpassword=hunter2", "postgres://db/events?sslpassword=xxxxx"},
		{"postgres://app:hunter2@db1:5432,db2:5432/events", "postgres://app:xxxxx@db1:5432,db2:5432/events"},
		{"amqp://guest:hunter2@rabbit:5672/", "amqp://guest:xxxxx@rabbit:5672/"},
		{"amqps://guest:p%40ss@rabbit/vhost", "amqps://guest:xxxxx@rabbit/vhost"},
		{"amqp://guest@rabbit/", "amqp://guest@rabbit/"},
		// Unescaped characters that make url.Parse fail or mis-split.
		{"amqp://guest:hun/ter2@rabbit:5672/", "amqp://guest:xxxxx@rabbit:5672/"},
		{"amqp://guest:hun#ter2@rabbit:5672/", "amqp://guest:xxxxx@rabbit:5672/"},
		{"amqp://guest:1234#5@rabbit/", "amqp://guest:xxxxx@rabbit/"},
		{"postgres://app:hun ter@db/x?password=hunter2", "postgres://app:xxxxx@db/x?password=xxxxx"},
		// key=value DSNs.
		{"host=db user=app password=hunter2 dbname=events", "host=db user=app password=xxxxx dbname=events"},
		{"host=db password = 'hun ter \\' 2' dbname=events", "host=db password = xxxxx dbname=events"},
		{"host=db PASSWORD='unterminated secret", "host=db PASSWORD=xxxxx"},
		{"host=db sslpassword=hunter2", "host=db sslpassword=xxxxx"},
		{"host=db user=app", "host=db user=app"},
	} {
		if got := config.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigPrintsNoSecrets(t *testing.T) {
	secrets := []string{"dbpass-61", "mqpass-72", "tok-SECRET-0123456789"}
	c, err := config.Load(env{
		config.EnvDatabaseURL: "postgres://app:" + secrets[0] + "@db/events?password=" + secrets[0],
		config.EnvAMQPURL:     "amqp://u:" + secrets[1] + "@r1/,amqp://u:" + secrets[1] + "@r2/",
		config.EnvAPITokens:   "ci:" + secrets[2] + ":publish",
	}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n%v\n%#v\n", c, c, c, c, c.Tokens, c.Tokens)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("start", "config", c, "token", c.Tokens[0])
	slog.New(slog.NewTextHandler(&out, nil)).Info("start", "config", c, "tokens", c.Tokens)
	j, _ := json.Marshal(c)
	out.Write(j)
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Fatalf("%q printed:\n%s", s, out.String())
		}
	}
	for _, want := range []string{"postgres://app:xxxxx@db/events", "amqp://u:xxxxx@r1/,amqp://u:xxxxx@r2/", "ci(publish)", `"auth":"ci(publish)"`, `"database":"postgres://app:xxxxx@db/events?password=xxxxx"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	embedded, _ := config.Load(env{}.lookup, nil)
	if s := embedded.String(); s != "database=sqlite:./eventbus-data broker=in-process exchange=edupulse.events http_addr=127.0.0.1:8080 auth=off" {
		t.Fatalf("String() = %q", s)
	}
}

func TestTimeouts(t *testing.T) {
	c, err := config.Load(env{}.lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 5*time.Second || c.ShutdownTimeout != 15*time.Second {
		t.Fatalf("default timeouts: request %s, shutdown %s; want 5s and 15s", c.RequestTimeout, c.ShutdownTimeout)
	}
	e := env{config.EnvRequestTimeout: "1500ms", config.EnvShutdownTimeout: "1m"}
	if c, err = config.Load(e.lookup, nil); err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 1500*time.Millisecond || c.ShutdownTimeout != time.Minute {
		t.Fatalf("timeouts from the environment: %s, %s", c.RequestTimeout, c.ShutdownTimeout)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	flags := config.AddFlags(fs)
	if err := fs.Parse([]string{"--request-timeout=2s", "--shutdown-timeout", "3s"}); err != nil {
		t.Fatal(err)
	}
	if c, err = config.Load(e.lookup, flags); err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 2*time.Second || c.ShutdownTimeout != 3*time.Second {
		t.Fatalf("flags do not override the environment: %s, %s", c.RequestTimeout, c.ShutdownTimeout)
	}
	for _, tc := range []struct{ name, value, want string }{
		{config.EnvRequestTimeout, "5", "needs a unit"},
		{config.EnvRequestTimeout, "soon", "not a duration"},
		{config.EnvShutdownTimeout, "0s", "above 0"},
		{config.EnvShutdownTimeout, "-1s", "above 0"},
		{config.EnvRequestTimeout, "2h", "at most"},
	} {
		_, err := config.Load(env{tc.name: tc.value}.lookup, nil)
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v; want ErrInvalid naming %s and saying %q", tc.name, tc.value, err, tc.name, tc.want)
		}
	}
}

// TestRelayPartitions: EVENTBUS_RELAY_PARTITIONS defaults to 1, the flag
// overrides the environment, and a value that is not a count from 1 to
// store.MaxPartitions is refused with the setting named.
func TestRelayPartitions(t *testing.T) {
	c, err := config.Load(env{}.lookup, nil)
	if err != nil || c.RelayPartitions != 1 {
		t.Fatalf("default: %d, %v; want 1", c.RelayPartitions, err)
	}
	e := env{config.EnvRelayPartitions: "4"}
	if c, err = config.Load(e.lookup, nil); err != nil || c.RelayPartitions != 4 {
		t.Fatalf("from the environment: %d, %v; want 4", c.RelayPartitions, err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	flags := config.AddFlags(fs)
	if err := fs.Parse([]string{"--relay-partitions=8"}); err != nil {
		t.Fatal(err)
	}
	if c, err = config.Load(e.lookup, flags); err != nil || c.RelayPartitions != 8 {
		t.Fatalf("the flag does not override the environment: %d, %v", c.RelayPartitions, err)
	}
	for _, v := range []string{"0", "-1", "65", "1000000000000000000000", "four", "2.5", "0x10"} {
		_, err := config.Load(env{config.EnvRelayPartitions: v}.lookup, nil)
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), config.EnvRelayPartitions) || !strings.Contains(err.Error(), "1 to 64") {
			t.Errorf("%s=%s: %v; want ErrInvalid naming the setting and its range", config.EnvRelayPartitions, v, err)
		}
	}
}
