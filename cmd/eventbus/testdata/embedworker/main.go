// Command embedworker is a test program: a process that embeds the service
// the way a worker does on the embedded default, with consumers of its own
// beside the HTTP API and the relay. The tests of cmd/eventbus kill it and
// reach its in-process broker through the eventbus command's --server.
//
// Configuration is eventbus's (EVENTBUS_*), plus:
//
//	EMBEDWORKER_RECORD  file the "recorder" group appends each event ID it receives to
//	EMBEDWORKER_DELAY   how long the recorder takes per event (a Go duration)
//
// The "recorder" group takes every event, one at a time. The "rejecter"
// group takes lesson.published events and gives up on each at once, so its
// dead-letter queue fills.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/service"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "embedworker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := config.Load(os.LookupEnv, nil)
	if err != nil {
		return err
	}
	delay, _ := time.ParseDuration(os.Getenv("EMBEDWORKER_DELAY"))
	record, err := os.OpenFile(os.Getenv("EMBEDWORKER_RECORD"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer record.Close()
	var mu sync.Mutex

	svc, err := service.Open(ctx, cfg, service.Config{Logger: log, Source: "embedworker"})
	if err != nil {
		return err
	}
	defer svc.Close()
	recorder, err := consume.New(svc.Broker, consume.Config{Group: "recorder", Exchange: cfg.Exchange, Logger: log},
		consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			time.Sleep(delay)
			mu.Lock()
			defer mu.Unlock()
			// Synced before the ack: a killed process has recorded every
			// event it acked.
			if _, err := fmt.Fprintln(record, env.ID); err != nil {
				return err
			}
			return record.Sync()
		}))
	if err != nil {
		return err
	}
	rejecter, err := consume.New(svc.Broker, consume.Config{Group: "rejecter", Exchange: cfg.Exchange, Logger: log},
		consume.On(func(context.Context, event.Envelope, edupulse.LessonPublished) error {
			return consume.Permanent(errors.New("rejected by the test"))
		}))
	if err != nil {
		return err
	}

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	errc := make(chan error, 3)
	for _, c := range []*consume.Consumer{recorder, rejecter} {
		go func() { errc <- c.Run(runCtx) }()
	}
	// The queues exist once the consumers are ready: only then may the
	// relay publish.
	for _, c := range []*consume.Consumer{recorder, rejecter} {
		select {
		case <-c.Ready():
		case err := <-errc:
			return err
		}
	}
	go func() { errc <- svc.Run(runCtx, service.RunOptions{HTTP: true, Relay: true}) }()
	var errs []error
	for range 3 {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		stopAll()
	}
	return errors.Join(errs...)
}
