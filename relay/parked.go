package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// Parked is a parked event as GET /v1/parked and `eventbus parked list
// --json` show it.
type Parked struct {
	Relay         string    `json:"relay"`
	Partition     int       `json:"partition"`
	EventID       uuid.UUID `json:"event_id"`
	Position      int64     `json:"position"`
	Type          string    `json:"type"`
	Stream        string    `json:"stream"` // "" for an event without a stream
	StreamVersion int64     `json:"stream_version"`
	Reason        string    `json:"reason"`
	Attempts      int       `json:"attempts"`
	ParkedAt      time.Time `json:"parked_at"`
	LastAttemptAt time.Time `json:"last_attempt_at"`
	// RetryRequested is true from a retry request until the leading relay
	// has published the event or parked it again.
	RetryRequested bool `json:"retry_requested"`
}

func parkedView(events []store.ParkedEvent) []Parked {
	out := make([]Parked, len(events))
	for i, e := range events {
		out[i] = Parked{Relay: e.Relay, Partition: e.Number, EventID: e.EventID, Position: e.Position, Type: e.Type,
			Stream: e.Stream, StreamVersion: e.StreamVersion, Reason: e.Reason, Attempts: e.Attempts,
			ParkedAt: e.ParkedAt, LastAttemptAt: e.LastAttemptAt, RetryRequested: e.RetryRequested}
	}
	return out
}

// ListParked returns the events relay has parked, by position; an empty,
// non-nil list when there are none.
func ListParked(ctx context.Context, s store.Parking, relay string) ([]Parked, error) {
	events, err := s.Parked(ctx, relay)
	if err != nil {
		return nil, fmt.Errorf("list parked events: %w", err)
	}
	return parkedView(events), nil
}

// RetryResult is the outcome of RequestRetry.
type RetryResult struct {
	// Requested are the events marked for retry, by position: those asked
	// for and the events parked before them in their streams.
	Requested []Parked `json:"requested"`
	// NotParked are the IDs asked for that are not parked (published
	// already, or never parked).
	NotParked []uuid.UUID `json:"not_parked"`
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
	res := RetryResult{Requested: parkedView(marked), NotParked: []uuid.UUID{}}
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
