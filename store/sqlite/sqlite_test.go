package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
	"github.com/edupulse/eventbus/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newStore opens a migrated store in a directory of the test's own.
func newStore(t testing.TB) *sqlite.Store { return newStoreWith(t, sqlite.Config{}) }

// newStoreWith is newStore with cfg.
func newStoreWith(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	return openAtWith(t, filepath.Join(t.TempDir(), "data", "events.db"), cfg)
}

func openAt(t testing.TB, path string) *sqlite.Store { return openAtWith(t, path, sqlite.Config{}) }

func openAtWith(t testing.TB, path string, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness[*sql.Tx]{
		New: func(t *testing.T) store.TxStore[*sql.Tx] { return newStore(t) },
		Begin: func(ctx context.Context, s store.TxStore[*sql.Tx]) (*sql.Tx, error) {
			return s.(*sqlite.Store).DB().BeginTx(ctx, nil)
		},
		Commit:       func(ctx context.Context, tx *sql.Tx) error { return tx.Commit() },
		Rollback:     func(ctx context.Context, tx *sql.Tx) error { return tx.Rollback() },
		SingleWriter: true,
		SetNextPosition: func(t *testing.T, s store.TxStore[*sql.Tx], n int64) {
			setNextPosition(t, s.(*sqlite.Store), n)
		},
		ForgetStreamHashes: func(t *testing.T, s store.TxStore[*sql.Tx]) {
			// The file is the test's own: lift its append-only guard.
			_, err := s.(*sqlite.Store).DB().ExecContext(context.Background(), `
				DROP TRIGGER event_store_no_update;
				UPDATE event_store SET stream_hash = NULL;
				CREATE TRIGGER event_store_no_update BEFORE UPDATE ON event_store
				BEGIN SELECT RAISE(ABORT, 'event_store is append-only: UPDATE is not allowed'); END;`)
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}

// setNextPosition moves event_store's AUTOINCREMENT sequence so that the
// next event gets position n.
func setNextPosition(t testing.TB, s *sqlite.Store, n int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, "UPDATE sqlite_sequence SET seq = ? WHERE name = 'event_store'", n-1)
	if err != nil {
		t.Fatal(err)
	}
	if updated, _ := res.RowsAffected(); updated == 0 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO sqlite_sequence (name, seq) VALUES ('event_store', ?)", n-1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func testDraft(typ, subject, data string) event.Draft {
	return event.Draft{
		ID: uuid.Must(uuid.NewV7()), Type: typ, Source: "sqlite-test", Subject: subject,
		OccurredAt: time.Now().Truncate(event.TimePrecision), CorrelationID: uuid.Must(uuid.NewV7()),
		Data: json.RawMessage(data),
	}
}

// TestReopenKeepsEverything closes the store and opens the file again: the
// events, the stream versions, the leases and the inbox are all still there.
func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "events.db")
	s := openAt(t, path)
	var drafts []event.Draft
	for i := 0; i < 5; i++ {
		drafts = append(drafts, testDraft("test.reopen", "kept", `{"i":`+strconv.Itoa(i)+`}`))
	}
	res, err := s.Append(ctx, drafts)
	if err != nil {
		t.Fatal(err)
	}
	p := store.Partition{Relay: "default"}
	if _, err := s.Claim(ctx, p, "relay-a", time.Minute); err != nil {
		t.Fatal(err)
	}
	checkpoint := store.CursorOf(res[2].Envelope)
	if err := s.Advance(ctx, p, "relay-a", checkpoint, time.Minute); err != nil {
		t.Fatal(err)
	}
	inboxID := uuid.Must(uuid.NewV7())
	if _, err := s.MarkHandled(ctx, "group", inboxID); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.Append(ctx, []event.Draft{testDraft("test.reopen", "", `{}`)}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Append after Close = %v, want ErrUnavailable", err)
	}

	s2 := openAt(t, path)
	page, err := s2.Read(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != len(res) {
		t.Fatalf("read %d events after reopening, want %d", len(page.Events), len(res))
	}
	for i, e := range page.Events {
		want := res[i].Envelope
		if e.ID != want.ID || e.Position != want.Position || e.StreamVersion != want.StreamVersion ||
			!e.RecordedAt.Equal(want.RecordedAt) || !e.OccurredAt.Equal(want.OccurredAt) || string(e.Data) != string(want.Data) {
			t.Fatalf("event %d after reopening = %+v, want %+v", i, e, want)
		}
	}
	next, err := s2.Append(ctx, []event.Draft{testDraft("test.reopen", "kept", `{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if v := next[0].Envelope.StreamVersion; v != 6 {
		t.Fatalf("stream continues at version %d, want 6", v)
	}
	if next[0].Envelope.Position <= res[4].Envelope.Position {
		t.Fatalf("position %d after reopening is not above %d", next[0].Envelope.Position, res[4].Envelope.Position)
	}
	leases, err := s2.Leases(ctx, "default")
	if err != nil || len(leases) != 1 || leases[0].Checkpoint != checkpoint || leases[0].Holder != "relay-a" {
		t.Fatalf("leases after reopening = %+v, %v; want relay-a at %v", leases, err, checkpoint)
	}
	if ok, err := s2.Handled(ctx, "group", inboxID); err != nil || !ok {
		t.Fatalf("Handled after reopening = %v, %v; want true", ok, err)
	}
}
