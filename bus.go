// Package eventbus is the EduPulse event bus: services record domain events
// in their own database transactions, and every stored event is delivered to
// the workers that react to it.
//
// A producer dispatches inside its business transaction, so the change and
// its event commit together or not at all:
//
//	tx, _ := pool.Begin(ctx)
//	// ... the business change ...
//	env, err := bus.Dispatch(ctx, tx, edupulse.QuizSubmitted{...}, eventbus.Subject("quiz-42"))
//	// ...
//	err = tx.Commit(ctx)
//
// The event store (package store) is the outbox. The relay (package relay)
// publishes what has committed, in commit order, to the broker. Workers
// (package consume) react to it. Package event defines the envelope.
package eventbus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// Errors re-exported from the packages that define them, so that callers of
// Dispatch can test them without importing those packages.
var (
	ErrInvalid          = event.ErrInvalid
	ErrUnknownType      = event.ErrUnknownType
	ErrTooLarge         = event.ErrTooLarge
	ErrVersionConflict  = store.ErrVersionConflict
	ErrConcurrentAppend = store.ErrConcurrentAppend
	ErrTxConflict       = store.ErrTxConflict
	ErrUnavailable      = store.ErrUnavailable
)

// FieldError is the error of an input limit: it names the field at fault
// ("source", "data.answers[2]") and the rule broken (see event.FieldError).
// Dispatch, DispatchBatch and Append return it, wrapped, for a draft that
// breaks one; test for it with errors.As.
type FieldError = event.FieldError

// DefaultExchange is the topic exchange the relay publishes events to, and
// consumers bind to, unless configured otherwise (EVENTBUS_EXCHANGE).
const DefaultExchange = "edupulse.events"

// DefaultMaxDataBytes is the largest event data the bus accepts unless
// configured otherwise.
const DefaultMaxDataBytes = 256 << 10

// Bus records events in a store. TTx is the store's transaction type: pgx.Tx
// for PostgreSQL, *sql.Tx for the embedded SQLite store. A Bus is safe for
// concurrent use.
type Bus[TTx any] struct {
	store        store.TxStore[TTx]
	registry     *event.Registry
	source       string
	maxData      int
	allowUnknown bool
	now          func() time.Time
	onCommit     func()
}

// Option configures a Bus.
type Option func(*config)

type config struct {
	registry     *event.Registry
	source       string
	maxData      int
	allowUnknown bool
	now          func() time.Time
	onCommit     func()
}

// WithRegistry sets the event types the bus accepts. Without it the bus
// accepts no raw drafts unless AllowUnknownTypes is set; typed payloads
// passed to Dispatch always describe themselves.
func WithRegistry(r *event.Registry) Option { return func(c *config) { c.registry = r } }

// WithSource sets the default source of dispatched events: a URI-reference
// (RFC 3986) of at most 255 bytes, such as "/quiz-service" (see
// event.CheckSource; a source that breaks it fails every Dispatch that uses
// it). It defaults to the program's name.
func WithSource(source string) Option { return func(c *config) { c.source = source } }

// WithMaxDataBytes sets the largest event data accepted, in bytes.
func WithMaxDataBytes(n int) Option { return func(c *config) { c.maxData = n } }

// AllowUnknownTypes lets raw drafts of types the registry does not know
// through, checked only for being JSON. Use it in a gateway that forwards
// events for newer producers; they are stored and delivered unchanged.
func AllowUnknownTypes() Option { return func(c *config) { c.allowUnknown = true } }

// WithClock sets the clock for default event times. Tests use it.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// OnCommit sets a function the bus calls after it has committed events in a
// transaction of its own (Append, or Dispatch with a nil transaction). An
// in-process relay uses it to wake up at once instead of at its next poll.
func OnCommit(fn func()) Option { return func(c *config) { c.onCommit = fn } }

// New returns a bus that records events in s.
func New[TTx any](s store.TxStore[TTx], opts ...Option) *Bus[TTx] {
	c := config{source: programSource(), maxData: DefaultMaxDataBytes, now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	if c.registry == nil {
		c.registry = event.NewRegistry()
	}
	return &Bus[TTx]{store: s, registry: c.registry, source: c.source, maxData: c.maxData,
		allowUnknown: c.allowUnknown, now: c.now, onCommit: c.onCommit}
}

// Store returns the bus's store.
func (b *Bus[TTx]) Store() store.TxStore[TTx] { return b.store }

// Registry returns the event types the bus accepts.
func (b *Bus[TTx]) Registry() *event.Registry { return b.registry }

// DispatchOption sets a field of the event Dispatch records.
type DispatchOption func(*event.Draft)

// Subject puts the event in a stream.
func Subject(subject string) DispatchOption { return func(d *event.Draft) { d.Subject = subject } }

// ExpectVersion makes the dispatch fail with ErrVersionConflict unless the
// stream is at version v (0: the stream does not exist yet).
func ExpectVersion(v int64) DispatchOption {
	return func(d *event.Draft) { d.ExpectedVersion = event.Expect(v) }
}

// WithID sets the event's ID. Dispatching again with the same ID stores
// nothing new and returns the original: it makes retries safe.
func WithID(id uuid.UUID) DispatchOption { return func(d *event.Draft) { d.ID = id } }

// CorrelationID sets the event's correlation ID.
func CorrelationID(id uuid.UUID) DispatchOption {
	return func(d *event.Draft) { d.CorrelationID = id }
}

// CausationID sets the ID of the event that caused this one.
func CausationID(id uuid.UUID) DispatchOption { return func(d *event.Draft) { d.CausationID = id } }

// OccurredAt sets when the event happened.
func OccurredAt(t time.Time) DispatchOption { return func(d *event.Draft) { d.OccurredAt = t } }

// Source sets the event's producer.
func Source(source string) DispatchOption { return func(d *event.Draft) { d.Source = source } }

// NewDraft encodes a typed payload as a draft, for DispatchBatch. It checks
// the payload first.
func NewDraft(p event.Payload, opts ...DispatchOption) (event.Draft, error) {
	if isNil(p) {
		return event.Draft{}, fmt.Errorf("%w: no payload", event.ErrInvalid)
	}
	if err := event.Validate(p); err != nil {
		return event.Draft{}, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return event.Draft{}, fmt.Errorf("%w: encode %s: %v", event.ErrInvalid, p.EventType(), err)
	}
	d := event.Draft{Type: p.EventType(), Data: data}
	for _, o := range opts {
		o(&d)
	}
	return d, nil
}

// Dispatch records one event inside tx; it commits or rolls back with tx.
// Pass a nil tx to record it in a transaction of the bus's own.
//
// The event gets a UUIDv7 ID, the current time, the correlation and
// causation of the event being handled in ctx (see event.WithCause), and the
// trace context of the span in ctx, unless options say otherwise.
//
// An event that breaks an input limit (DESIGN "Input limits": its type,
// source, subject or data) is not stored; the error wraps ErrInvalid and a
// *FieldError that names the field.
func (b *Bus[TTx]) Dispatch(ctx context.Context, tx TTx, p event.Payload, opts ...DispatchOption) (event.Envelope, error) {
	d, err := NewDraft(p, opts...)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("eventbus: dispatch: %w", err)
	}
	// The payload was checked as a Go value: decoding its JSON again to
	// check it would only cost time.
	res, err := b.appendTx(ctx, tx, []event.Draft{d}, true)
	if err != nil {
		return event.Envelope{}, err
	}
	return res[0].Envelope, nil
}

// DispatchBatch records several events atomically inside tx (nil: in a
// transaction of the bus's own). Drafts of types the registry knows are
// decoded and checked; see Dispatch for the defaults it fills.
func (b *Bus[TTx]) DispatchBatch(ctx context.Context, tx TTx, drafts []event.Draft) ([]event.Envelope, error) {
	res, err := b.appendTx(ctx, tx, drafts, false)
	if err != nil {
		return nil, err
	}
	out := make([]event.Envelope, len(res))
	for i, r := range res {
		out[i] = r.Envelope
	}
	return out, nil
}

// Append records drafts atomically in a transaction of the bus's own and
// reports, for each, whether it was already stored. The HTTP API uses it.
func (b *Bus[TTx]) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	var noTx TTx
	return b.appendTx(ctx, noTx, drafts, false)
}

// appendTx prepares drafts and appends them in tx. checked says that the
// drafts' data was encoded from payloads already validated.
func (b *Bus[TTx]) appendTx(ctx context.Context, tx TTx, drafts []event.Draft, checked bool) ([]store.Appended, error) {
	prepared := make([]event.Draft, len(drafts))
	copy(prepared, drafts)
	if err := b.prepare(ctx, prepared, checked); err != nil {
		return nil, fmt.Errorf("eventbus: dispatch: %w", err)
	}
	res, err := b.store.AppendTx(ctx, tx, prepared)
	if err != nil {
		return nil, fmt.Errorf("eventbus: dispatch %d events: %w", len(drafts), err)
	}
	if b.onCommit != nil && isNil(tx) {
		b.onCommit()
	}
	return res, nil
}

// Prepare fills the defaults of drafts in place and checks them, as Dispatch
// does before it stores them. Errors wrap event.ErrInvalid,
// event.ErrUnknownType or event.ErrTooLarge.
func (b *Bus[TTx]) Prepare(ctx context.Context, drafts []event.Draft) error {
	if err := b.prepare(ctx, drafts, false); err != nil {
		return err
	}
	return store.CheckDrafts(drafts)
}

// prepare fills the defaults of drafts and checks their types and data.
// What every stored event needs (store.CheckDrafts), the input limits
// among it (event.CheckDraft), the store checks when it appends: checking
// it here too would cost the hot path a second pass over the data. checked
// says the data was encoded from payloads that checked themselves.
func (b *Bus[TTx]) prepare(ctx context.Context, drafts []event.Draft, checked bool) error {
	now := b.now()
	corr, hasCorr := event.CorrelationIDFrom(ctx)
	cause, hasCause := event.CauseFrom(ctx)
	parent, state := event.TraceContextFrom(ctx)
	for i := range drafts {
		d := &drafts[i]
		if err := event.CheckTypeName(d.Type); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if len(d.Data) > b.maxData {
			return fmt.Errorf("event %d (%s): %w: %d bytes, the limit is %d", i, d.Type, event.ErrTooLarge, len(d.Data), b.maxData)
		}
		switch {
		case checked:
			// Encoded from a typed payload that checked itself: it
			// describes itself, registered or not.
		case b.registry.Known(d.Type):
			if err := b.registry.Check(d.Type, d.Data); err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
		case !b.allowUnknown:
			return fmt.Errorf("event %d: %w: %q (known: %v)", i, event.ErrUnknownType, d.Type, b.registry.Types())
		}
		if d.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("event %d: new id: %w", i, err)
			}
			d.ID = id
		}
		if d.Source == "" {
			d.Source = b.source
		}
		if d.OccurredAt.IsZero() {
			d.OccurredAt = now
		}
		d.OccurredAt = d.OccurredAt.Truncate(event.TimePrecision)
		if d.CorrelationID == uuid.Nil {
			if !hasCorr {
				// One correlation ID for the whole batch: it is one request.
				id, err := uuid.NewV7()
				if err != nil {
					return fmt.Errorf("event %d: new correlation id: %w", i, err)
				}
				corr, hasCorr = id, true
			}
			d.CorrelationID = corr
		}
		if d.CausationID == uuid.Nil && hasCause {
			d.CausationID = cause
		}
		if d.TraceParent == "" {
			d.TraceParent, d.TraceState = parent, state
		}
	}
	return nil
}

// programSource is the default source: the program's name, escaped as a
// URI path segment if need be, or "eventbus" if even that breaks the
// source's limits.
func programSource() string {
	name := filepath.Base(os.Args[0])
	if event.CheckSource(name) == nil {
		return name
	}
	if escaped := url.PathEscape(name); event.CheckSource(escaped) == nil {
		return escaped
	}
	return "eventbus"
}

// isNil reports whether a transaction value is nil: a nil interface such
// as pgx.Tx, or a nil pointer such as *sql.Tx.
func isNil(tx any) bool {
	if tx == nil {
		return true
	}
	v := reflect.ValueOf(tx)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}
