package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

func testLeases[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	p := store.Partition{Relay: "default", Number: 0}

	l, err := s.Claim(ctx, p, "relay-a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Holder != "relay-a" || !l.Checkpoint.IsZero() || !l.Until.After(time.Now().Add(5*time.Second)) {
		t.Fatalf("first claim = %+v; want relay-a holding a fresh lease", l)
	}
	if l, err = s.Claim(ctx, p, "relay-b", 10*time.Second); err != nil || l.Holder != "relay-a" {
		t.Fatalf("claim of a held lease = %+v, %v; want relay-a still holding it", l, err)
	}
	c1 := store.Cursor{Order: 10, Position: 7}
	if err := s.Advance(ctx, p, "relay-a", c1, 10*time.Second); err != nil {
		t.Fatalf("Advance by the holder: %v", err)
	}
	wantErr(t, s.Advance(ctx, p, "relay-b", store.Cursor{Order: 99, Position: 99}, time.Second), store.ErrLeaseLost)
	// A checkpoint never moves backwards.
	if err := s.Advance(ctx, p, "relay-a", store.Cursor{Order: 10, Position: 3}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	leases, err := s.Leases(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Checkpoint != c1 || leases[0].Holder != "relay-a" {
		t.Fatalf("Leases = %+v; want relay-a at %v", leases, c1)
	}
	// Release hands over at once, and the checkpoint stays.
	if err := s.Release(ctx, p, "relay-a"); err != nil {
		t.Fatal(err)
	}
	if l, err = s.Claim(ctx, p, "relay-b", 10*time.Second); err != nil || l.Holder != "relay-b" || l.Checkpoint != c1 {
		t.Fatalf("claim after release = %+v, %v; want relay-b from %v", l, err, c1)
	}
	wantErr(t, s.Advance(ctx, p, "relay-a", store.Cursor{Order: 11}, time.Second), store.ErrLeaseLost)

	// An expired lease can be taken over.
	p2 := store.Partition{Relay: "default", Number: 1}
	if l, err = s.Claim(ctx, p2, "relay-a", 50*time.Millisecond); err != nil || l.Holder != "relay-a" {
		t.Fatalf("claim = %+v, %v", l, err)
	}
	time.Sleep(150 * time.Millisecond)
	if l, err = s.Claim(ctx, p2, "relay-b", time.Second); err != nil || l.Holder != "relay-b" {
		t.Fatalf("claim of an expired lease = %+v, %v; want relay-b", l, err)
	}
	wantErr(t, s.Advance(ctx, p2, "relay-a", store.Cursor{Order: 1}, time.Second), store.ErrLeaseLost)
	if leases, err = s.Leases(ctx, "default"); err != nil || len(leases) != 2 {
		t.Fatalf("Leases = %d, %v; want 2 partitions", len(leases), err)
	}
	if leases, err = s.Leases(ctx, "other"); err != nil || len(leases) != 0 {
		t.Fatalf("Leases(other) = %d, %v; want none", len(leases), err)
	}
	// Relays names each relay that has a partition, once, in order.
	if _, err := s.Claim(ctx, store.Partition{Relay: "badges"}, "relay-c", time.Second); err != nil {
		t.Fatal(err)
	}
	if names, err := s.Relays(ctx); err != nil || fmt.Sprint(names) != "[badges default]" {
		t.Fatalf("Relays = %q, %v; want [badges default]", names, err)
	}
}

func testInbox[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	id := uuid.Must(uuid.NewV7())
	calls := 0
	effect := draft("test.effect", "", `{}`)
	handle := func(ctx context.Context, tx TTx) error {
		calls++
		_, err := s.AppendTx(ctx, tx, []event.Draft{effect})
		return err
	}
	handled, err := s.HandleOnce(ctx, "group-a", id, handle)
	if err != nil || !handled || calls != 1 {
		t.Fatalf("first HandleOnce = %v, %v after %d calls; want handled once", handled, err, calls)
	}
	if _, err := s.Get(ctx, effect.ID); err != nil {
		t.Fatalf("the handler's effect was not committed with the inbox record: %v", err)
	}
	handled, err = s.HandleOnce(ctx, "group-a", id, handle)
	if err != nil || handled || calls != 1 {
		t.Fatalf("second HandleOnce = %v, %v after %d calls; want skipped", handled, err, calls)
	}
	if ok, err := s.Handled(ctx, "group-a", id); err != nil || !ok {
		t.Fatalf("Handled = %v, %v; want true", ok, err)
	}
	if ok, err := s.Handled(ctx, "group-b", id); err != nil || ok {
		t.Fatalf("Handled(other group) = %v, %v; want false", ok, err)
	}

	// A failing handler records nothing and keeps nothing of its effect.
	id2 := uuid.Must(uuid.NewV7())
	boom := errors.New("boom")
	lost := draft("test.effect", "", `{}`)
	handled, err = s.HandleOnce(ctx, "group-a", id2, func(ctx context.Context, tx TTx) error {
		if _, err := s.AppendTx(ctx, tx, []event.Draft{lost}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || handled {
		t.Fatalf("failing HandleOnce = %v, %v; want the handler's error", handled, err)
	}
	if ok, _ := s.Handled(ctx, "group-a", id2); ok {
		t.Fatal("a failed handler was recorded as handled")
	}
	if _, err := s.Get(ctx, lost.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed handler's effect was stored: %v", err)
	}

	// Concurrent deliveries of one event: exactly one runs.
	id3 := uuid.Must(uuid.NewV7())
	var ran atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.HandleOnce(ctx, "group-c", id3, func(ctx context.Context, tx TTx) error {
				ran.Add(1)
				time.Sleep(20 * time.Millisecond)
				return nil
			})
			if err != nil {
				t.Errorf("concurrent HandleOnce: %v", err)
			}
		}()
	}
	wg.Wait()
	if ran.Load() != 1 {
		t.Fatalf("handler ran %d times for one event, want 1", ran.Load())
	}

	if ok, err := s.MarkHandled(ctx, "group-d", id); err != nil || !ok {
		t.Fatalf("MarkHandled = %v, %v; want true", ok, err)
	}
	if ok, err := s.MarkHandled(ctx, "group-d", id); err != nil || ok {
		t.Fatalf("second MarkHandled = %v, %v; want false", ok, err)
	}
}
