package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
)

func draft(subject string) event.Draft {
	return event.Draft{ID: uuid.New(), Type: "quiz.submitted", Source: "test", Subject: subject,
		OccurredAt: time.Now(), CorrelationID: uuid.New(), Data: json.RawMessage(`{}`)}
}

// TestAppendRetriesALostDeadlock: a caller's transaction appends to stream
// A, then to stream B, in two calls, while Append stores a batch on both,
// taking their locks in its fixed order: B first. PostgreSQL breaks the
// deadlock by cancelling one of them; when it is Append's statement, which
// stored nothing, Append runs it again and succeeds.
func TestAppendRetriesALostDeadlock(t *testing.T) {
	s := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	// Name two streams so that the batch locks B before A.
	a, b := "", ""
	for i := 0; a == ""; i++ {
		x, y := "stream-a"+strconv.Itoa(i), "stream-b"+strconv.Itoa(i)
		var before bool
		if err := s.Pool().QueryRow(ctx, `SELECT hashtextextended($1, 0) > hashtextextended($2, 0)`, x, y).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if before {
			a, b = x, y
		}
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// PostgreSQL cancels the transaction whose deadlock check runs first.
	// On a busy machine the batch's could run late: give this transaction
	// a check far later, so that the batch is always the one cancelled.
	if _, err := tx.Exec(ctx, `SET LOCAL deadlock_timeout = '20s'`); err != nil {
		t.Skipf("cannot order the deadlock checks (needs a superuser): %v", err)
	}
	if _, err := s.AppendTx(ctx, tx, []event.Draft{draft(a)}); err != nil {
		t.Fatal(err)
	}
	batch := []event.Draft{draft(a), draft(b)}
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, batch)
		done <- err
	}()
	// Wait until the batch holds B and waits for A.
	for {
		var waiting int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the batch returned before it waited: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Close the cycle. The batch's deadlock check runs first and cancels
	// it; this transaction then gets B.
	if _, err := s.AppendTx(ctx, tx, []event.Draft{draft(b)}); err != nil {
		t.Fatalf("the caller's transaction lost the deadlock: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Append: %v; want it to run again after losing the deadlock", err)
	}
	for _, d := range batch {
		if _, err := s.Get(ctx, d.ID); err != nil {
			t.Fatalf("event of the batch: %v", err)
		}
	}
}

// TestReadsRefuseFiltersNoTextMatches: a filter whose text PostgreSQL
// cannot hold gets ErrBadFilter, not the database's error.
func TestReadsRefuseFiltersNoTextMatches(t *testing.T) {
	s := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	bad := store.Filter{Subject: "a\x00b"}
	if _, err := s.Read(ctx, bad); !errors.Is(err, store.ErrBadFilter) {
		t.Errorf("Read: %v", err)
	}
	if _, err := s.Count(ctx, store.Filter{Types: []string{"\xff"}}); !errors.Is(err, store.ErrBadFilter) {
		t.Errorf("Count: %v", err)
	}
	if _, err := s.ReadStream(ctx, "a\x00b", 1, 10); !errors.Is(err, store.ErrBadFilter) {
		t.Errorf("ReadStream: %v", err)
	}
}

// TestCallersDeadlockIsTyped: two callers' transactions dispatch to the same
// two streams in opposite orders. PostgreSQL cancels one of them; its caller
// gets ErrTxConflict, which says to run the transaction again.
func TestCallersDeadlockIsTyped(t *testing.T) {
	s := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	tx1, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(context.Background()) }()
	tx2, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(context.Background()) }()
	if _, err := s.AppendTx(ctx, tx1, []event.Draft{draft("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, tx2, []event.Draft{draft("y")}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() {
		_, err := s.AppendTx(ctx, tx1, []event.Draft{draft("y")})
		errs <- err
	}()
	go func() {
		_, err := s.AppendTx(ctx, tx2, []event.Draft{draft("x")})
		errs <- err
	}()
	first, second := <-errs, <-errs
	lost := first
	if lost == nil {
		lost = second
	}
	if !errors.Is(lost, store.ErrTxConflict) || (first != nil && second != nil) {
		t.Fatalf("errors %v and %v; want exactly one ErrTxConflict", first, second)
	}
}

// TestRepeatableReadConflictIsTyped: under REPEATABLE READ the stream's head
// comes from the transaction's snapshot; a concurrent append to the stream
// makes it stale, and the caller gets ErrTxConflict, not a raw unique
// violation.
func TestRepeatableReadConflictIsTyped(t *testing.T) {
	s := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := s.Append(ctx, []event.Draft{draft("rr")}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT 1 FROM event_store LIMIT 1"); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, []event.Draft{draft("rr")}); err != nil { // version 2, after the snapshot
		t.Fatal(err)
	}
	_, err = s.AppendTx(ctx, tx, []event.Draft{draft("rr")})
	if !errors.Is(err, store.ErrTxConflict) {
		t.Fatalf("AppendTx on a stale snapshot: %v, want ErrTxConflict", err)
	}
}

// TestRefusedAppendFailsOnlyItself: concurrent appends without a caller's
// transaction may share one (group commit). When PostgreSQL refuses one of
// them (here a trigger of the test's own refuses a type), the group rolls
// back and each member runs alone: only the refused append fails, and every
// other is stored once.
func TestRefusedAppendFailsOnlyItself(t *testing.T) {
	s := newStore(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := s.Pool().Exec(ctx, `
		CREATE FUNCTION refuse_test_type() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.type = 'test.refused' THEN
				RAISE EXCEPTION 'refused by the test';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_test_type BEFORE INSERT ON event_store
			FOR EACH ROW EXECUTE FUNCTION refuse_test_type();`); err != nil {
		t.Fatal(err)
	}
	const rounds, callers = 5, 16
	groups := map[uint64]int{}
	for round := 0; round < rounds; round++ {
		drafts := make([]event.Draft, callers)
		for i := range drafts {
			drafts[i] = draft("s-" + strconv.Itoa(round) + "-" + strconv.Itoa(i%4))
		}
		refused := round % callers
		drafts[refused].Type = "test.refused"
		results := make([][]store.Appended, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		done := make(chan int, callers)
		for i := range drafts {
			go func(i int) {
				<-start
				results[i], errs[i] = s.Append(ctx, drafts[i:i+1])
				done <- i
			}(i)
		}
		close(start)
		for range drafts {
			<-done
		}
		for i, err := range errs {
			if i == refused {
				if err == nil || !strings.Contains(err.Error(), "refused by the test") {
					t.Fatalf("round %d: refused append: error %v, want the trigger's", round, err)
				}
				if _, err := s.Get(ctx, drafts[i].ID); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("round %d: refused event was stored (Get: %v)", round, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d: append %d failed with the refused one: %v", round, i, err)
			}
			if results[i][0].Duplicate {
				t.Fatalf("round %d: append %d reported as a duplicate", round, i)
			}
			groups[results[i][0].Envelope.CommitOrder]++
		}
	}
	var n int64
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM event_store`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != rounds*(callers-1) {
		t.Fatalf("%d events stored, want %d", n, rounds*(callers-1))
	}
	t.Logf("%d events in %d transactions", n, len(groups))
}
