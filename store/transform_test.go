package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/google/uuid"
)

// fixedStore serves one event for every read; the rest of Store is unused.
type fixedStore struct {
	store.Store
	env event.Envelope
}

func (f fixedStore) Read(context.Context, store.Filter) (store.Page, error) {
	return store.Page{Events: []event.Envelope{f.env}}, nil
}

func (f fixedStore) ReadStream(context.Context, string, int64, int) ([]event.Envelope, error) {
	return []event.Envelope{f.env}, nil
}

func (f fixedStore) Get(context.Context, uuid.UUID) (event.Envelope, error) { return f.env, nil }

func TestTransformedAppliesTheChainInOrderOnEveryRead(t *testing.T) {
	ctx := context.Background()
	raw := fixedStore{env: event.Envelope{Type: "a"}}
	s := store.Transformed(raw, store.Chain(
		func(_ context.Context, evs []event.Envelope) error {
			for i := range evs {
				evs[i].Type += "b"
			}
			return nil
		},
		nil,
		func(_ context.Context, evs []event.Envelope) error {
			for i := range evs {
				evs[i].Type += "c"
			}
			return nil
		},
	))
	page, err := s.Read(ctx, store.Filter{})
	if err != nil || page.Events[0].Type != "abc" {
		t.Fatalf("Read = %v, %v; want type abc", page.Events, err)
	}
	evs, err := s.ReadStream(ctx, "s", 1, 10)
	if err != nil || evs[0].Type != "abc" {
		t.Fatalf("ReadStream = %v, %v; want type abc", evs, err)
	}
	env, err := s.Get(ctx, uuid.Nil)
	if err != nil || env.Type != "abc" {
		t.Fatalf("Get = %v, %v; want type abc", env, err)
	}
	if raw.env.Type != "a" {
		t.Fatalf("the store's own event changed to %q", raw.env.Type)
	}
}

func TestTransformedReportsTheTransformsError(t *testing.T) {
	boom := errors.New("boom")
	s := store.Transformed(fixedStore{}, func(context.Context, []event.Envelope) error { return boom })
	if _, err := s.Read(context.Background(), store.Filter{}); !errors.Is(err, boom) {
		t.Fatalf("Read error = %v, want boom", err)
	}
	if _, err := s.Get(context.Background(), uuid.Nil); !errors.Is(err, boom) {
		t.Fatalf("Get error = %v, want boom", err)
	}
}
