package testenv

import (
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// StreamObserver records what a consumer group receives, and checks order
// as deliveries arrive: the first delivery of each stream's versions must
// come in version order, without a gap (G3). A delivery of an event already
// seen is a redelivery, counted, not judged. It is safe for concurrent use.
type StreamObserver struct {
	mu           sync.Mutex
	seen         map[uuid.UUID]struct{}
	next         map[string]int64 // per stream: the highest version seen
	deliveries   int64
	redeliveries int64
	violations   int64
	examples     []string
}

// ObserverSummary is what a StreamObserver saw.
type ObserverSummary struct {
	// Deliveries counts every delivery, Redeliveries those of events seen
	// before, Distinct the events.
	Deliveries, Redeliveries, Distinct int64
	// Violations counts first deliveries out of stream order or after a
	// gap; Examples describes the first of them.
	Violations int64
	Examples   []string
}

// NewStreamObserver returns an observer that has seen nothing.
func NewStreamObserver() *StreamObserver {
	return &StreamObserver{seen: map[uuid.UUID]struct{}{}, next: map[string]int64{}}
}

// Record records one delivery.
func (o *StreamObserver) Record(env event.Envelope) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deliveries++
	if _, dup := o.seen[env.ID]; dup {
		o.redeliveries++
		return
	}
	o.seen[env.ID] = struct{}{}
	if env.Subject == "" {
		return
	}
	last := o.next[env.Subject]
	if env.StreamVersion != last+1 {
		o.violations++
		if len(o.examples) < 10 {
			o.examples = append(o.examples, fmt.Sprintf("stream %s: first delivery of version %d (%s) came after version %d",
				env.Subject, env.StreamVersion, env.ID, last))
		}
	}
	o.next[env.Subject] = max(last, env.StreamVersion)
}

// Distinct returns how many distinct events arrived.
func (o *StreamObserver) Distinct() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

// Seen reports whether the event arrived.
func (o *StreamObserver) Seen(id uuid.UUID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.seen[id]
	return ok
}

// IDs returns the distinct events that arrived.
func (o *StreamObserver) IDs() []uuid.UUID {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]uuid.UUID, 0, len(o.seen))
	for id := range o.seen {
		out = append(out, id)
	}
	return out
}

// Summary returns what the observer saw so far.
func (o *StreamObserver) Summary() ObserverSummary {
	o.mu.Lock()
	defer o.mu.Unlock()
	return ObserverSummary{Deliveries: o.deliveries, Redeliveries: o.redeliveries, Distinct: int64(len(o.seen)),
		Violations: o.violations, Examples: append([]string(nil), o.examples...)}
}
