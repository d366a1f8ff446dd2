package service

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestSpecialPasswordsNeverShow opens the service on database and broker
// URLs whose passwords hold the characters URLs give a meaning to, as they
// are and percent-encoded, on ports where nothing listens, and checks that
// no part of a password shows in the error or the logs: neither when the
// configuration refuses the URL, nor when the service opens a URL that was
// never checked (a program that fills config.Config itself).
func TestSpecialPasswordsNeverShow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, pw := range testenv.SpecialPasswords(false) {
		for _, vars := range []map[string]string{
			{config.EnvDatabaseURL: "postgres://quiz:" + pw + "@127.0.0.1:1/quiz?connect_timeout=5"},
			{config.EnvDatabaseURL: "postgres://quiz@127.0.0.1:1/quiz?password=" + pw},
			{config.EnvAMQPURL: "amqp://guest:" + pw + "@127.0.0.1:1/"},
			{config.EnvAMQPURL: "amqp://guest:" + pw + "@127.0.0.1:1/,amqp://guest:" + pw + "@127.0.0.1:2/"},
		} {
			vars[config.EnvDataDir] = dir
			var out bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, nil)
			if err != nil {
				out.WriteString(err.Error() + "\n")
				// As a program that skips Load would open it.
				cfg = config.Config{DatabaseURL: vars[config.EnvDatabaseURL], DataDir: dir, Exchange: broker.DefaultEventsExchange}
				if list := vars[config.EnvAMQPURL]; list != "" {
					cfg.AMQPURLs = strings.Split(list, ",")
				}
			}
			svc, err := Open(ctx, cfg, Config{Logger: log})
			if err == nil {
				t.Errorf("%v: opened", vars)
				_ = svc.Close()
				continue
			}
			out.WriteString(err.Error())
			if part, shows := testenv.ShowsSecret(out.String()); shows {
				t.Errorf("%v: %q shows:\n%s", vars, part, out.String())
			}
		}
	}
}
