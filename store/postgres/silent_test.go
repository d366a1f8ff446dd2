package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

// A relay standing by claims its lease with a context that has no deadline.
// With the server fallen silent (a proxy that accepts and forwards nothing)
// the claim hung for ever; it now gives up when the lease it asks for would
// have run out.
func TestClaimGivesUpOnASilentServer(t *testing.T) {
	schemaURL := testenv.PostgresSchema(t)
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, u.Host)
	ctx := testenv.Context(t, time.Minute)
	s, err := postgres.Open(ctx, testenv.WithHost(schemaURL, proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	p := store.Partition{Relay: testenv.Name("relay")}
	if _, err := s.Claim(context.Background(), p, "a", time.Second); err != nil {
		t.Fatalf("claim before the fault: %v", err)
	}
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.ClearFaults) // before the pool closes

	done := make(chan error, 1)
	go func() {
		_, err := s.Claim(context.Background(), p, "a", time.Second)
		done <- err
	}()
	// A bound, not a speed claim: before, the claim never returned.
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("claim on a silent server: %v; want a deadline or unavailable error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the claim on a silent server did not return within 30 s")
	}
}
