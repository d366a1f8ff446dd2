package httpapi

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/sqlite"
)

// TestStreamHubDropsAClientThatDoesNotKeepUp checks that a stream whose
// buffer is full is dropped with the final comment, while another stream
// goes on: memory stays bounded however slow a client is.
func TestStreamHubDropsAClientThatDoesNotKeepUp(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, t.TempDir()+"/events.db", sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	hub := newStreamHub(s, nil)
	hub.buffer = 1
	defer hub.stop()
	slow, _, err := hub.subscribe(ctx, time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.unsubscribe(slow)
	witness, _, err := hub.subscribe(ctx, time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.unsubscribe(witness)
	appendOne := func() uuid.UUID {
		t.Helper()
		d := event.Draft{ID: uuid.New(), Type: "test.ping", Source: "test", OccurredAt: time.Now(), CorrelationID: uuid.New(), Data: []byte(`{}`)}
		if _, err := s.Append(ctx, []event.Draft{d}); err != nil {
			t.Fatal(err)
		}
		hub.wake()
		return d.ID
	}
	for i := range 2 {
		id := appendOne()
		// The witness, which keeps up, gets every page.
		select {
		case page := <-witness.pages:
			if page[len(page)-1].ID != id {
				t.Fatalf("page %d ends with %s, want %s", i, page[len(page)-1].ID, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("page %d did not come within 30s", i)
		}
	}
	select {
	case <-slow.gone:
		if slow.reason != commentSlow {
			t.Fatalf("reason %q", slow.reason)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the slow stream was not dropped")
	}
	select {
	case <-witness.gone:
		t.Fatal("the witness was dropped")
	default:
	}
}
