package relay

import (
	"sync"

	"github.com/edupulse/eventbus/broker"
)

// maxUnroutableTypes bounds the types the relay remembers having warned
// about, and the label values of eventbus_relay_unroutable_total: types
// come from producers, and a flood of new ones must not grow either
// without end.
const maxUnroutableTypes = 1000

// otherTypes is the label of unroutable events past maxUnroutableTypes.
const otherTypes = "_other"

// unroutableTypes remembers the event types the broker returned as
// unroutable, so that the relay warns once per type and counts the rest.
type unroutableTypes struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// first records typ and reports whether it is the first return of that
// type, and the label to count it under.
func (u *unroutableTypes) first(typ string) (first bool, label string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.seen[typ]; ok {
		return false, typ
	}
	if len(u.seen) >= maxUnroutableTypes {
		return false, otherTypes
	}
	if u.seen == nil {
		u.seen = map[string]struct{}{}
	}
	u.seen[typ] = struct{}{}
	return true, typ
}

// noteUnroutable counts an event that no queue is bound for, and warns the
// first time a type comes back: with the in-process broker of the embedded
// default every event that no worker listens to comes back, and a warning
// for each would drown the log.
func (r *worker) noteUnroutable(m broker.Returned) {
	r.cfg.Metrics.errors.WithLabelValues("unroutable").Inc()
	first, label := r.unroutable.first(m.RoutingKey)
	r.cfg.Metrics.unroutable.WithLabelValues(label).Inc()
	if first {
		r.log.Warn("no queue is bound for events of type "+m.RoutingKey+": the broker dropped this one, and will drop the next "+
			"until a consumer binds a queue to the type; the events stay in the store and can be replayed. "+
			"This is said once per type: eventbus_relay_unroutable_total counts them",
			"type", m.RoutingKey, "event_id", m.MessageID, "reason", m.Reason)
	}
}
