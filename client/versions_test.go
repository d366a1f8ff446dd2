package client_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestStoredVersions: a client reads a version 1 event as version 2 by
// default, and as stored with Config.StoredVersions, from every read; it
// publishes a version with NewEvent.DataSchema and lists the types with
// Schemas.
func TestStoredVersions(t *testing.T) {
	cfg := backends[0].config(t)
	_, url := server(t, cfg)
	ctx := testenv.Context(t, 30*time.Second)
	v1 := event.SchemaURN("quiz.submitted", 1)
	e := quiz(5)
	e.DataSchema = v1
	stored, err := newClient(t, url, publishToken).Publish(ctx, e)
	if err != nil || stored.Event.DataSchema != v1 {
		t.Fatalf("publish version 1: %+v, %v", stored.Event, err)
	}
	latest := newClient(t, url, readToken)
	asStored := newClientConfig(t, url, client.Config{Token: readToken, StoredVersions: true})
	for _, c := range []struct {
		client     *client.Client
		wantSchema string
		maxScore   bool
	}{{latest, event.SchemaURN("quiz.submitted", 2), true}, {asStored, v1, false}} {
		one, err := c.client.Event(ctx, stored.Event.ID)
		if err != nil {
			t.Fatal(err)
		}
		page, err := c.client.Events(ctx, client.Filter{Subject: e.Subject})
		if err != nil || len(page.Events) != 1 {
			t.Fatalf("Events: %+v, %v", page, err)
		}
		stream, err := c.client.Stream(ctx, e.Subject, 1, 0)
		if err != nil || len(stream.Events) != 1 {
			t.Fatalf("Stream: %+v, %v", stream, err)
		}
		for _, got := range []event.Envelope{one, page.Events[0], stream.Events[0]} {
			var data map[string]any
			_ = json.Unmarshal(got.Data, &data)
			if _, has := data["max_score"]; got.DataSchema != c.wantSchema || has != c.maxScore {
				t.Fatalf("read %s %s; want %s, max_score present %v", got.DataSchema, got.Data, c.wantSchema, c.maxScore)
			}
		}
	}
	types, err := latest.Schemas(ctx)
	if err != nil || len(types) != 3 || types[2].Type != "quiz.submitted" || len(types[2].Versions) != 2 || types[2].Origin != event.OriginGo {
		t.Fatalf("Schemas: %+v, %v", types, err)
	}
}
