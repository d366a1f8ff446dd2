package store

import (
	"context"
	"fmt"

	"github.com/edupulse/eventbus/event"
	"github.com/google/uuid"
)

// Transform rewrites events in place as they leave the store, for example to
// open encrypted personal fields or to upcast old versions of a type. It
// must not change an event's ID, position or stream version: readers page
// by them.
type Transform func(ctx context.Context, events []event.Envelope) error

// Chain returns a Transform that applies ts in order; nil entries are
// skipped.
func Chain(ts ...Transform) Transform {
	var live []Transform
	for _, t := range ts {
		if t != nil {
			live = append(live, t)
		}
	}
	return func(ctx context.Context, events []event.Envelope) error {
		for _, t := range live {
			if err := t(ctx, events); err != nil {
				return err
			}
		}
		return nil
	}
}

// Transformed returns s with t applied to every event that Read,
// ReadPartition, ReadStream and Get return. Everything else, appends included, goes to s
// unchanged. Every component that reads through the result (the relay,
// replay, the HTTP API, the live stream) sees the same events.
func Transformed(s Store, t Transform) Store {
	if t == nil {
		return s
	}
	return &transformed{Store: s, t: t}
}

type transformed struct {
	Store
	t Transform
}

// Unwrap returns the store under the transform, for optional interfaces
// such as Migrator.
func (s *transformed) Unwrap() Store { return s.Store }

func (s *transformed) Read(ctx context.Context, f Filter) (Page, error) {
	page, err := s.Store.Read(ctx, f)
	if err != nil {
		return page, err
	}
	if err := s.t(ctx, page.Events); err != nil {
		return Page{}, fmt.Errorf("store: read: %w", err)
	}
	return page, nil
}

func (s *transformed) ReadPartition(ctx context.Context, f PartitionFilter) (PartitionPage, error) {
	page, err := s.Store.ReadPartition(ctx, f)
	if err != nil {
		return page, err
	}
	if err := s.t(ctx, page.Events); err != nil {
		return PartitionPage{}, fmt.Errorf("store: read partition %d: %w", f.Number, err)
	}
	return page, nil
}

func (s *transformed) ReadStream(ctx context.Context, subject string, fromVersion int64, limit int) ([]event.Envelope, error) {
	events, err := s.Store.ReadStream(ctx, subject, fromVersion, limit)
	if err != nil {
		return nil, err
	}
	if err := s.t(ctx, events); err != nil {
		return nil, fmt.Errorf("store: read stream %q: %w", subject, err)
	}
	return events, nil
}

func (s *transformed) Get(ctx context.Context, id uuid.UUID) (event.Envelope, error) {
	env, err := s.Store.Get(ctx, id)
	if err != nil {
		return env, err
	}
	one := []event.Envelope{env}
	if err := s.t(ctx, one); err != nil {
		return event.Envelope{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	return one[0], nil
}
