package store

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
)

// ParkedEvent is an event a relay partition set aside because the broker
// refuses it in a way that publishing it again cannot fix (G9), or because
// an earlier event of its stream is parked: order per stream holds, so the
// later events of that stream wait behind it.
type ParkedEvent struct {
	// Partition is the relay partition that parked the event.
	Partition
	EventID  uuid.UUID
	Position int64
	Type     string
	// Stream is the event's subject, "" for an event without a stream;
	// StreamVersion its version in it.
	Stream        string
	StreamVersion int64
	// Reason says why the event is parked: the broker's refusal, or the
	// event it waits behind.
	Reason string
	// Attempts counts the times the relay tried to publish the event.
	Attempts int
	// ParkedAt is when the event was first parked; LastAttemptAt when the
	// relay last tried to publish it.
	ParkedAt      time.Time
	LastAttemptAt time.Time
	// RetryRequested is true from a RequestRetry until the leading relay
	// has published the event (which unparks it) or parked it again.
	RetryRequested bool
}

// Parking records a relay's parked events. The relay writes them; operators
// list them and ask for a retry, which the relay leading the partition
// carries out, so that it publishes them in order before any newer event of
// their streams.
type Parking interface {
	// Park records e as parked. When e.EventID is already parked by
	// e.Partition, it updates Reason and LastAttemptAt, adds e.Attempts to
	// the attempts, and clears RetryRequested; ParkedAt stays.
	Park(ctx context.Context, e ParkedEvent) error
	// Parked lists the events parked by relay's partitions, by position.
	Parked(ctx context.Context, relay string) ([]ParkedEvent, error)
	// RequestRetry marks parked events of relay for retry: those with the
	// given IDs, and, since a stream is published in order, every event
	// parked before them in their streams; with all, every parked event.
	// It returns the events marked, by position. IDs that are not parked
	// are ignored. The leading relay publishes a stream whose first parked
	// event is marked as a whole, in order: the rest only waited behind it.
	RequestRetry(ctx context.Context, relay string, ids []uuid.UUID, all bool) ([]ParkedEvent, error)
	// Unpark forgets a parked event, once the relay has published it.
	Unpark(ctx context.Context, p Partition, id uuid.UUID) error
}

// SortParked orders parked events by position, then partition: the order
// Parked and RequestRetry return them in.
func SortParked(events []ParkedEvent) {
	slices.SortFunc(events, func(a, b ParkedEvent) int {
		if c := cmp.Compare(a.Position, b.Position); c != 0 {
			return c
		}
		return cmp.Compare(a.Number, b.Number)
	})
}
