// Package storetest is the conformance suite for event stores. Every
// implementation of store.TxStore runs it from its own tests:
//
//	storetest.Run(t, storetest.Harness[pgx.Tx]{New: ..., Begin: ..., ...})
//
// The suite is the contract of package store in executable form: appends,
// idempotency, expected versions, transactions, gap-free commit-order reads
// (G4), lossless unknown types (G6), leases, relay partitions (reads by
// partition, membership, the partition count) and the inbox.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
)

// Harness tells the suite how to make and drive one store implementation.
type Harness[TTx any] struct {
	// New returns a fresh, migrated, empty store. The harness closes it
	// when the test ends.
	New func(t *testing.T) store.TxStore[TTx]
	// Begin, Commit and Rollback drive a transaction of the store's driver.
	Begin    func(ctx context.Context, s store.TxStore[TTx]) (TTx, error)
	Commit   func(ctx context.Context, tx TTx) error
	Rollback func(ctx context.Context, tx TTx) error
	// SetNextPosition, if set, makes the next appended event get position
	// n, so the suite can check positions beyond 32 bits.
	SetNextPosition func(t *testing.T, s store.TxStore[TTx], n int64)
	// ForgetStreamHashes, if set, makes the stored events look written
	// before the store kept stream hashes (stream_hash NULL), so that the
	// suite can check that partition reads still place them.
	ForgetStreamHashes func(t *testing.T, s store.TxStore[TTx])
	// SingleWriter says that one transaction writes at a time (SQLite):
	// an append waits for a transaction that a test holds open, where on
	// PostgreSQL it commits beside it.
	SingleWriter bool
}

// Run runs the conformance suite against h.
func Run[TTx any](t *testing.T, h Harness[TTx]) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness[TTx])
	}{
		{"AppendAndGet", testAppendAndGet[TTx]},
		{"AppendBatchOrder", testAppendBatchOrder[TTx]},
		{"Idempotent", testIdempotent[TTx]},
		{"IdempotentWithinBatch", testIdempotentWithinBatch[TTx]},
		{"ExpectedVersion", testExpectedVersion[TTx]},
		{"ConcurrentWritersOneStream", testConcurrentWritersOneStream[TTx]},
		{"ConcurrentAppendsOwnResults", testConcurrentAppendsOwnResults[TTx]},
		{"TxRollbackLeavesNothing", testTxRollback[TTx]},
		{"TxCommitIsVisibleOnlyAfterCommit", testTxCommit[TTx]},
		{"OpenTransactionHoldsReadersBack", testHeldBack[TTx]},
		{"StreamOrderAcrossLateLock", testStreamOrderAcrossLateLock[TTx]},
		{"TailSeesEveryCommitOnceInOrder", testTailUnderConcurrency[TTx]},
		{"Filters", testFilters[TTx]},
		{"Paging", testPaging[TTx]},
		{"Windows", testWindows[TTx]},
		{"ReadStream", testReadStream[TTx]},
		{"UnknownTypeRoundTripsByteForByte", testUnknownTypeBytes[TTx]},
		{"DataSchemaKept", testDataSchemaKept[TTx]},
		{"GetNotFound", testGetNotFound[TTx]},
		{"InvalidDraftsStoreNothing", testInvalidDrafts[TTx]},
		{"Leases", testLeases[TTx]},
		{"ReadPartition", testReadPartition[TTx]},
		{"PartitionHeldBack", testPartitionHeldBack[TTx]},
		{"PartitionBacklog", testPartitionBacklog[TTx]},
		{"Heartbeat", testHeartbeat[TTx]},
		{"Inbox", testInbox[TTx]},
		{"Parked", testParked[TTx]},
		{"StatsAndBacklog", testStatsAndBacklog[TTx]},
		{"LargePositions", testLargePositions[TTx]},
		{"MigrateIsIdempotent", testMigrateIsIdempotent[TTx]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

func (h Harness[TTx]) open(t *testing.T) store.TxStore[TTx] {
	t.Helper()
	s := h.New(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// draft returns a complete draft of a test type.
func draft(typ, subject string, data string) event.Draft {
	return event.Draft{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          typ,
		Source:        "storetest",
		Subject:       subject,
		OccurredAt:    time.Now().Truncate(event.TimePrecision),
		CorrelationID: uuid.Must(uuid.NewV7()),
		Data:          json.RawMessage(data),
	}
}

func appendOK(t *testing.T, s store.Store, drafts ...event.Draft) []event.Envelope {
	t.Helper()
	res, err := s.Append(ctxFor(t), drafts)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	out := make([]event.Envelope, len(res))
	for i, r := range res {
		if r.Duplicate {
			t.Fatalf("Append: event %d unexpectedly a duplicate", i)
		}
		out[i] = r.Envelope
	}
	return out
}

// readAll reads every event matching f, page by page, once every committed
// event is visible (see settle).
func readAll(t *testing.T, s store.Store, f store.Filter) []event.Envelope {
	t.Helper()
	settle(t, s)
	return readNow(t, s, f)
}

// settle waits until readers see every committed event of s: other test
// packages' open transactions hold commit-order readers back.
func settle(t *testing.T, s store.Store) store.Stats { return testenv.Settle(t, s) }

// readNow reads every event matching f that readers see now, page by page.
func readNow(t *testing.T, s store.Reader, f store.Filter) []event.Envelope {
	t.Helper()
	var out []event.Envelope
	for {
		page, err := s.Read(ctxFor(t), f)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 {
			return out
		}
		f.After = page.Next
	}
}

func countAll(t *testing.T, s store.Store) int {
	t.Helper()
	return len(readAll(t, s, store.Filter{Limit: 1000}))
}

// sameEvent compares two envelopes field by field.
func sameEvent(t *testing.T, what string, got, want event.Envelope) {
	t.Helper()
	diffs := []string{}
	check := func(field string, ok bool, g, w any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Type", got.Type == want.Type, got.Type, want.Type)
	check("Source", got.Source == want.Source, got.Source, want.Source)
	check("Subject", got.Subject == want.Subject, got.Subject, want.Subject)
	check("StreamVersion", got.StreamVersion == want.StreamVersion, got.StreamVersion, want.StreamVersion)
	check("OccurredAt", got.OccurredAt.Equal(want.OccurredAt), got.OccurredAt, want.OccurredAt)
	check("RecordedAt", got.RecordedAt.Equal(want.RecordedAt), got.RecordedAt, want.RecordedAt)
	check("CorrelationID", got.CorrelationID == want.CorrelationID, got.CorrelationID, want.CorrelationID)
	check("CausationID", got.CausationID == want.CausationID, got.CausationID, want.CausationID)
	check("TraceParent", got.TraceParent == want.TraceParent, got.TraceParent, want.TraceParent)
	check("TraceState", got.TraceState == want.TraceState, got.TraceState, want.TraceState)
	check("Position", got.Position == want.Position, got.Position, want.Position)
	check("CommitOrder", got.CommitOrder == want.CommitOrder, got.CommitOrder, want.CommitOrder)
	check("Data", string(got.Data) == string(want.Data), string(got.Data), string(want.Data))
	check("DataSchema", got.DataSchema == want.DataSchema, got.DataSchema, want.DataSchema)
	if len(diffs) > 0 {
		t.Errorf("%s differs:\n  %v", what, diffs)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %v", err, target)
	}
}

// testMigrateIsIdempotent: migrating a store that is up to date changes
// nothing, and leaves it at the newest version.
func testMigrateIsIdempotent[TTx any](t *testing.T, h Harness[TTx]) {
	m, ok := h.open(t).(store.Migrator)
	if !ok {
		t.Skip("the store has no versioned schema")
	}
	ctx := ctxFor(t)
	if err := m.Migrate(ctx); err != nil {
		t.Fatalf("Migrate an up-to-date store: %v", err)
	}
	cur, latest, err := m.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur != latest || latest < 1 {
		t.Fatalf("schema at version %d, newest %d", cur, latest)
	}
}

// aside is appends running beside a transaction that a test holds open.
type aside struct {
	done      chan error
	committed bool // they committed while the transaction was open
}

// appendAside appends drafts, each in a transaction of its own, in a
// goroutine, while the caller holds a transaction open. Where writers run
// side by side it waits until they have committed (committed); on a
// single-writer store they wait for the open transaction, and it returns
// at once. Call end after committing the open transaction.
func appendAside[TTx any](t *testing.T, h Harness[TTx], s store.Store, drafts ...event.Draft) *aside {
	t.Helper()
	ctx := ctxFor(t)
	a := &aside{done: make(chan error, 1)}
	go func() {
		for _, d := range drafts {
			if _, err := s.Append(ctx, []event.Draft{d}); err != nil {
				a.done <- err
				return
			}
		}
		a.done <- nil
	}()
	if h.SingleWriter {
		return a
	}
	if err := <-a.done; err != nil {
		t.Fatalf("append aside (an append that waits for a stream the open transaction holds never commits beside it): %v", err)
	}
	a.committed = true
	return a
}

// end waits for the appends to end, when they had not committed yet.
func (a *aside) end(t *testing.T) {
	t.Helper()
	if a.committed {
		return
	}
	if err := <-a.done; err != nil {
		t.Fatalf("append aside: %v", err)
	}
}
