package relay

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// ListParked returns the events relay has parked, by position; an empty,
// non-nil list when there are none.
func ListParked(ctx context.Context, s store.Parking, relay string) ([]store.ParkedEvent, error) {
	events, err := s.Parked(ctx, relay)
	if err != nil {
		return nil, fmt.Errorf("list parked events: %w", err)
	}
	if events == nil {
		events = []store.ParkedEvent{}
	}
	return events, nil
}

// RetryResult is the outcome of RequestRetry.
type RetryResult struct {
	// Requested are the events marked for retry, by position: those asked
	// for and the events parked before them in their streams.
	Requested []store.ParkedEvent
	// NotParked are the IDs asked for that are not parked (published
	// already, or never parked).
	NotParked []uuid.UUID
}

// RequestRetry marks relay's parked events for retry: those with ids, or
// every one with all. The relay that leads their partition publishes them
// again within a second or so, each stream in order and before any newer
// event of it; an event that fails again stays parked, its attempts counted.
func RequestRetry(ctx context.Context, s store.Parking, relay string, ids []uuid.UUID, all bool) (RetryResult, error) {
	marked, err := s.RequestRetry(ctx, relay, ids, all)
	if err != nil {
		return RetryResult{}, fmt.Errorf("request a retry of parked events: %w", err)
	}
	if marked == nil {
		marked = []store.ParkedEvent{}
	}
	res := RetryResult{Requested: marked, NotParked: []uuid.UUID{}}
	found := make(map[uuid.UUID]bool, len(marked))
	for _, e := range marked {
		found[e.EventID] = true
	}
	for _, id := range ids {
		if !found[id] {
			res.NotParked = append(res.NotParked, id)
		}
	}
	return res, nil
}
