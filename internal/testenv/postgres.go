package testenv

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

// PostgresSchema creates a schema of the test's own on the shared server and
// returns a URL whose connections use it (search_path). The schema is dropped
// when the test ends.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	Need(t, "PostgreSQL", base)
	schema := Name("eb_test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testenv: connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("testenv: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("testenv: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Settle waits until readers see every committed event of s. Commit-order
// readers stop at the oldest transaction open anywhere on the PostgreSQL
// server, and the tests of other packages share it: their open transactions
// hold this test's reads back for a while. On SQLite it returns at once.
// It returns the figures it saw with nothing held back: a later Stats call
// may find events held back again, by a transaction begun since.
func Settle(t testing.TB, s store.Store) store.Stats {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := s.Stats(ctx)
		cancel()
		if err != nil {
			t.Fatalf("testenv: store stats: %v", err)
		}
		if st.HeldBack == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %d committed events still held back after a minute", st.HeldBack)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// PostgresStore opens a migrated event store in a schema of the test's own
// (see PostgresSchema). It is closed when the test ends.
func PostgresStore(t testing.TB) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, PostgresSchema(t))
	if err != nil {
		t.Fatalf("testenv: open the store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("testenv: migrate the store: %v", err)
	}
	return s
}
