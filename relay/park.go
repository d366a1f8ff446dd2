package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/backoff"
	"github.com/edupulse/eventbus/store"
)

// Parking (G9). An event the broker refuses in a way that sending it again
// cannot fix is parked: recorded in the store (store.Parking) with its
// reason, and skipped, so that the checkpoint moves past it and the events
// after it flow. Later events of its stream park behind it, so that a
// stream's order holds. A failure that is not one event's (the broker down,
// a lost connection, a blocked or full broker) parks nothing: the relay
// retries it with backoff as before.
//
// When a pipelined publish fails in a way one message may have caused (a
// refusal, or a negative confirm), the relay cannot tell which of the
// messages in flight did it. It then publishes the unconfirmed events again
// one at a time (isolate), and parks only the one that fails alone.
//
// A refusal stops the messages after it: the client refuses before sending,
// or the broker closes the channel and drops what follows. A negative
// confirm does not: events of the same stream that were in flight after the
// nacked one may already be delivered when it is parked. Nacks are rare
// (RabbitMQ nacks on internal errors); parking needs ParkAfterNacks of them
// in a row, and proof that the broker confirms other events meanwhile.

// Reasons recorded with parked events begin with one of these.
const (
	// ReasonRefused: the broker or the AMQP client refused the message.
	ReasonRefused = "refused by the broker: "
	// ReasonNacked: negative confirms, again and again, while other events
	// were confirmed.
	ReasonNacked = "nacked by the broker"
	// ReasonEncode: the stored event cannot be encoded as a message.
	ReasonEncode = "cannot be encoded: "
	// ReasonBehind: an earlier event of the same stream is parked.
	ReasonBehind = "waiting behind parked event "
)

// errRetryDue stops the pipeline when parked events were marked for retry,
// so that they are published before newer events of their streams.
var errRetryDue = errors.New("parked events are due for a retry")

// parkedSet is what the leading relay knows of its partition's parked
// events: the first parked event of each stream, which the stream's later
// events wait behind, and every parked event's ID.
type parkedSet struct {
	mu    sync.Mutex
	heads map[string]store.ParkedEvent // stream -> its first parked event
	ids   map[uuid.UUID]string         // parked event -> its stream
	// retryCheck is when the relay last looked for retry requests.
	retryCheck time.Time
}

func newParkedSet() *parkedSet {
	return &parkedSet{heads: map[string]store.ParkedEvent{}, ids: map[uuid.UUID]string{}}
}

func (s *parkedSet) add(e store.ParkedEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	addParked(s.heads, s.ids, e)
}

func addParked(heads map[string]store.ParkedEvent, ids map[uuid.UUID]string, e store.ParkedEvent) {
	ids[e.EventID] = e.Stream
	if e.Stream == "" {
		return
	}
	if h, ok := heads[e.Stream]; !ok || e.StreamVersion < h.StreamVersion {
		heads[e.Stream] = e
	}
}

// blocking returns the parked event that the event at version of stream
// must wait behind: its stream's first parked event, when that comes
// before it. An earlier event of the stream (read again by a leader that
// resumes from a checkpoint before the parked one) waits behind nothing.
func (s *parkedSet) blocking(stream string, version int64) (store.ParkedEvent, bool) {
	if stream == "" {
		return store.ParkedEvent{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heads[stream]
	return h, ok && version > h.StreamVersion
}

func (s *parkedSet) has(id uuid.UUID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

func (s *parkedSet) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids) == 0
}

// reset replaces the set with the partition's parked events in the store,
// in one step: a reader never sees it empty halfway.
func (s *parkedSet) reset(events []store.ParkedEvent) {
	heads, ids := map[string]store.ParkedEvent{}, map[uuid.UUID]string{}
	for _, e := range events {
		addParked(heads, ids, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heads, s.ids = heads, ids
}

// loadParked reads the partition's parked events from the store: a relay
// that takes over (after a restart or from another leader) keeps the
// streams parked.
func (r *worker) loadParked(ctx context.Context) ([]store.ParkedEvent, error) {
	all, err := r.store.Parked(ctx, r.cfg.Name)
	if err != nil {
		r.cfg.Metrics.errors.WithLabelValues("store").Inc()
		return nil, fmt.Errorf("relay: load parked events: %w", err)
	}
	mine := all[:0]
	for _, e := range all {
		if e.Partition == r.partition {
			mine = append(mine, e)
		}
	}
	r.parked.reset(mine)
	r.parked.mu.Lock()
	r.parked.retryCheck = time.Now()
	r.parked.mu.Unlock()
	return mine, nil
}

// retryDue reports whether parked events of the partition are marked for
// retry. It asks the store at most every ParkedPoll, and only while
// something is parked.
func (r *worker) retryDue(ctx context.Context) (bool, error) {
	if r.parked.empty() {
		return false, nil
	}
	r.parked.mu.Lock()
	due := time.Since(r.parked.retryCheck) >= r.cfg.ParkedPoll
	if due {
		r.parked.retryCheck = time.Now()
	}
	r.parked.mu.Unlock()
	if !due {
		return false, nil
	}
	events, err := r.loadParked(ctx)
	if err != nil {
		return false, err
	}
	for _, e := range events {
		if e.RetryRequested {
			return true, nil
		}
	}
	return false, nil
}

// park records env as parked with reason and attempts, and adds it to the
// set, so that later events of its stream wait behind it.
func (r *worker) park(ctx context.Context, env event.Envelope, reason string, attempts int) error {
	e := store.ParkedEvent{Partition: r.partition, EventID: env.ID, Position: env.Position, Type: env.Type,
		Stream: env.Subject, StreamVersion: env.StreamVersion, Reason: reason, Attempts: attempts}
	if err := r.store.Park(ctx, e); err != nil {
		r.cfg.Metrics.errors.WithLabelValues("store").Inc()
		return fmt.Errorf("relay: park event %s: %w", env.ID, err)
	}
	r.parked.add(e)
	r.cfg.Metrics.errors.WithLabelValues("parked").Inc()
	return nil
}

// parkBehind parks env behind the parked event head of its stream.
func (r *worker) parkBehind(ctx context.Context, env event.Envelope, head store.ParkedEvent) error {
	return r.park(ctx, env, behindReason(head), 0)
}

func behindReason(head store.ParkedEvent) string {
	return fmt.Sprintf("%s%s (position %d) of stream %q", ReasonBehind, head.EventID, head.Position, head.Stream)
}

// parkRefused parks env, which the broker refused, and logs it.
func (r *worker) parkRefused(ctx context.Context, env event.Envelope, reason string) error {
	r.log.Error("relay parked an event the broker refuses; the events after it flow, later events of its stream wait behind it; fix the cause and run 'eventbus parked retry'",
		"event_id", env.ID, "position", env.Position, "stream", env.Subject, "type", truncate(env.Type, 64), "reason", reason)
	return r.park(ctx, env, reason, 1)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// serial publishes one message at a time and waits for its confirm, on a
// publisher it reopens when the broker closed the last one.
type serial struct {
	r   *worker
	pub broker.Publisher
}

// get returns an open publisher.
func (s *serial) get(ctx context.Context) (broker.Publisher, error) {
	if s.pub != nil {
		select {
		case <-s.pub.Done():
			_ = s.pub.Close()
			s.pub = nil
		default:
			return s.pub, nil
		}
	}
	pub, err := s.r.broker.NewPublisher(ctx, broker.PublisherOptions{Mandatory: true, OnReturn: s.r.returned})
	if err != nil {
		s.r.cfg.Metrics.errors.WithLabelValues("broker").Inc()
		return nil, fmt.Errorf("relay: open publisher: %w", err)
	}
	s.pub = pub
	return pub, nil
}

// drop closes the publisher, so that the next get opens a new one.
func (s *serial) drop() {
	if s.pub != nil {
		_ = s.pub.Close()
		s.pub = nil
	}
}

// outcome of publishing one message alone.
type outcome int

const (
	sent    outcome = iota // confirmed
	refused                // refused: sending it again cannot succeed
	nacked                 // a negative confirm
)

// send publishes msg alone and waits for the broker's verdict. An error is
// a failure that is not the message's (transient); a refusal comes back as
// refused with its reason.
func (s *serial) send(ctx context.Context, routingKey string, msg broker.Message) (outcome, string, error) {
	pub, err := s.get(ctx)
	if err != nil {
		return 0, "", err
	}
	confirm, err := pub.Publish(ctx, s.r.cfg.Exchange, routingKey, msg)
	switch {
	case errors.Is(err, broker.ErrRefused):
		return refused, ReasonRefused + err.Error(), nil
	case err != nil:
		s.drop()
		return 0, "", fmt.Errorf("relay: publish: %w", err)
	}
	select {
	case <-confirm.Done():
	case <-ctx.Done():
		s.drop()
		return 0, "", ctx.Err()
	}
	if confirm.Acked() {
		return sent, "", nil
	}
	select {
	case <-pub.Done():
		var cause error = broker.ErrClosed
		if es, ok := pub.(broker.ErrSource); ok && es.Err() != nil {
			cause = es.Err()
		}
		s.drop()
		if errors.Is(cause, broker.ErrRefused) {
			return refused, ReasonRefused + cause.Error(), nil
		}
		return 0, "", fmt.Errorf("relay: publisher failed before the broker confirmed: %w", cause)
	default:
		// The next try goes on a new channel: on a channel that RabbitMQ
		// 3.10 nacked while a quorum queue had no leader, every later
		// message was nacked too, for as long as 19 s after the queue had
		// one, while a new channel was acked at once (test/cluster, 40
		// traced runs).
		s.drop()
		return nacked, "", nil
	}
}

// isolate publishes the events after cursor, up to and including upTo,
// one at a time, after a pipelined publish failed in a way one message may
// have caused. It parks the event that fails alone, and returns once it has
// parked one or reached upTo; settle is called for each event published or
// parked, in order. A failure that is not one event's is returned.
func (r *worker) isolate(ctx context.Context, sp *serial, cursor, upTo store.Cursor, settle func(tag)) error {
	r.log.Warn("relay publishes the unconfirmed events one at a time to find the one the broker refuses",
		"from_position", cursor.Position, "to_position", upTo.Position)
	// Events a nack probe already published, by ID: they are not sent twice.
	probed := map[uuid.UUID]bool{}
	found := false
	for cursor.Less(upTo) && !(found && len(probed) == 0) {
		page, err := r.readPartition(ctx, cursor)
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		if page.Next == cursor {
			return nil // upTo is not visible again yet; the pipeline goes on
		}
		for i, env := range page.Events {
			if upTo.Less(store.CursorOf(env)) {
				return nil
			}
			t := tag{cursor: store.CursorOf(env), recordedAt: env.RecordedAt, skipped: true}
			if found && len(probed) == 0 {
				return nil // found it, and passed the probe: pipelining resumes
			}
			if probed[env.ID] {
				delete(probed, env.ID)
				t.skipped = false
				settle(t)
				cursor = t.cursor
				continue
			}
			o, err := r.outgoing(ctx, env)
			if err != nil {
				return err
			}
			if o.Skip {
				settle(t)
				cursor = t.cursor
				continue
			}
			done, err := r.sendAlone(ctx, sp, env, o, page.Events[i+1:], probed)
			if err != nil {
				return err
			}
			t.skipped = !done.published
			settle(t)
			cursor = t.cursor
			found = found || done.parked
		}
		cursor = page.Next
	}
	return nil
}

type aloneResult struct{ published, parked bool }

// sendAlone publishes one event alone. A refused event is parked. A nacked
// one is sent again with backoff, up to ParkAfterNacks times; then it is
// parked if the next event of another stream (in rest) is confirmed, which
// shows that the broker takes other events, and it is nacked once more
// after that; if the other one is nacked too, the broker is failing as a
// whole, which is transient.
func (r *worker) sendAlone(ctx context.Context, sp *serial, env event.Envelope, o broker.Outgoing[tag], rest []event.Envelope, probed map[uuid.UUID]bool) (aloneResult, error) {
	// othersTaken: another stream's event was confirmed since this one's
	// last nack.
	othersTaken := false
	for nacks := 0; ; {
		res, reason, err := sp.send(ctx, o.RoutingKey, o.Message)
		if err != nil {
			return aloneResult{}, err
		}
		switch res {
		case sent:
			return aloneResult{published: true}, nil
		case refused:
			return aloneResult{parked: true}, r.parkRefused(ctx, env, reason)
		}
		r.cfg.Metrics.errors.WithLabelValues("nack").Inc()
		nacks++
		if othersTaken {
			reason := fmt.Sprintf("%s %d times in a row while other events were confirmed", ReasonNacked, nacks)
			return aloneResult{parked: true}, r.parkRefused(ctx, env, reason)
		}
		if nacks < r.cfg.ParkAfterNacks {
			if !backoff.Sleep(ctx, r.backoff.Delay(nacks)) {
				return aloneResult{}, ctx.Err()
			}
			continue
		}
		// Probe with the next event of another stream. If the broker
		// takes it, this one goes once more: the broker may have been
		// failing as a whole until a moment ago (a quorum queue nacks
		// everything while it elects a leader).
		if othersTaken, err = r.probe(ctx, sp, env, rest, probed); err != nil {
			return aloneResult{}, err
		}
		if !othersTaken {
			return aloneResult{}, fmt.Errorf("relay: event %s was nacked %d times, and no other event was confirmed meanwhile: %w",
				env.ID, nacks, broker.ErrNacked)
		}
	}
}

// probe publishes the next event in rest of another stream than env's, and
// reports whether the broker confirmed it; a confirmed one goes in probed,
// not to be sent again.
func (r *worker) probe(ctx context.Context, sp *serial, env event.Envelope, rest []event.Envelope, probed map[uuid.UUID]bool) (bool, error) {
	for _, next := range rest {
		if next.Subject != "" && next.Subject == env.Subject || probed[next.ID] {
			continue // of its stream, or published by an earlier probe
		}
		po, err := r.outgoing(ctx, next)
		if err != nil {
			return false, err
		}
		if po.Skip {
			continue
		}
		res, _, err := sp.send(ctx, po.RoutingKey, po.Message)
		if err != nil || res != sent {
			return false, err
		}
		probed[next.ID] = true
		return true, nil
	}
	return false, nil
}

// retryParked publishes the partition's parked events that are marked for
// retry, stream by stream in stream order, before any newer event of their
// streams: a stream whose first parked event is marked goes whole, since the
// rest only waited behind it. An event published is unparked; one that fails
// again stays parked with its attempts counted, and the rest of its stream
// stays parked behind it.
//
// A stream waits while the relay has not read past its parked events yet
// (a new leader starts from the last saved checkpoint): publishing them
// before the events that precede them would break the order.
func (r *worker) retryParked(ctx context.Context, sp *serial, cursor store.Cursor) error {
	events, err := r.loadParked(ctx)
	if err != nil {
		return err
	}
	var order []string
	streams := map[string][]store.ParkedEvent{}
	for _, e := range events {
		key := e.Stream
		if key == "" {
			key = "\x00" + e.EventID.String() // an event without a stream stands alone
		}
		if _, ok := streams[key]; !ok {
			order = append(order, key)
		}
		streams[key] = append(streams[key], e)
	}
	// A fresh channel: a broker setting the operator changed to fix the
	// cause (RabbitMQ's max_message_size) applies to new channels only.
	fresh := false
	for _, key := range order {
		list := streams[key]
		slicesSortByVersion(list)
		if !list[0].RetryRequested {
			continue // the stream's first parked event was not asked for
		}
		envs := make([]event.Envelope, 0, len(list))
		kept := list[:0]
		for _, pe := range list {
			env, err := r.store.Get(ctx, pe.EventID)
			if errors.Is(err, store.ErrNotFound) {
				r.log.Warn("a parked event is no longer in the store; unparking it", "event_id", pe.EventID)
				if err := r.store.Unpark(ctx, r.partition, pe.EventID); err != nil {
					return fmt.Errorf("relay: unpark event %s: %w", pe.EventID, err)
				}
				continue
			}
			if err != nil {
				r.cfg.Metrics.errors.WithLabelValues("store").Inc()
				return fmt.Errorf("relay: read parked event %s: %w", pe.EventID, err)
			}
			envs = append(envs, env)
			kept = append(kept, pe)
		}
		list = kept
		if len(envs) == 0 || cursor.Less(store.CursorOf(envs[len(envs)-1])) {
			continue // not read past yet: retried once the relay has
		}
		if !fresh {
			sp.drop()
			fresh = true
		}
		// Once its first parked event is due, the whole stream goes, in
		// order: the rest only waited behind it.
		for i, pe := range list {
			env := envs[i]
			reason := ""
			o, encErr := r.message(env)
			if encErr != nil {
				reason = ReasonEncode + encErr.Error()
			} else {
				for nacks := 0; ; {
					res, why, err := sp.send(ctx, o.RoutingKey, o.Message)
					if err != nil {
						return err
					}
					if res == sent {
						break
					}
					if res == refused {
						reason = why
						break
					}
					if nacks++; nacks >= r.cfg.ParkAfterNacks {
						reason = fmt.Sprintf("%s %d times in a row on retry", ReasonNacked, nacks)
						break
					}
					if !backoff.Sleep(ctx, r.backoff.Delay(nacks)) {
						return ctx.Err()
					}
				}
			}
			if reason != "" {
				r.log.Error("a parked event failed again on retry; it stays parked", "event_id", pe.EventID, "reason", reason)
				if err := r.store.Park(ctx, store.ParkedEvent{Partition: r.partition, EventID: pe.EventID, Position: pe.Position,
					Type: pe.Type, Stream: pe.Stream, StreamVersion: pe.StreamVersion, Reason: reason, Attempts: 1}); err != nil {
					return fmt.Errorf("relay: park event %s again: %w", pe.EventID, err)
				}
				// The rest of the stream waits behind it again, no longer
				// marked for retry.
				for _, behind := range list[i+1:] {
					behind.Reason, behind.Attempts = behindReason(pe), 0
					if err := r.store.Park(ctx, behind); err != nil {
						return fmt.Errorf("relay: park event %s again: %w", behind.EventID, err)
					}
				}
				break
			}
			r.cfg.Metrics.published.Inc()
			if err := r.store.Unpark(ctx, r.partition, pe.EventID); err != nil {
				r.cfg.Metrics.errors.WithLabelValues("store").Inc()
				// It was published; if it stays recorded, a later retry
				// publishes it again (at least once).
				return fmt.Errorf("relay: unpark event %s after publishing it: %w", pe.EventID, err)
			}
			r.log.Info("relay published a parked event on retry", "event_id", pe.EventID, "position", pe.Position)
		}
	}
	_, err = r.loadParked(ctx)
	return err
}

func slicesSortByVersion(list []store.ParkedEvent) {
	slices.SortStableFunc(list, func(a, b store.ParkedEvent) int { return cmp.Compare(a.StreamVersion, b.StreamVersion) })
}
