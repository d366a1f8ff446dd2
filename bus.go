// Package eventbus is the EduPulse event bus: services record domain events
// in their own database transactions, and every stored event is delivered to
// the workers that react to it.
//
// A producer dispatches inside its business transaction, so the change and
// its event commit together or not at all:
//
//	tx, _ := pool.Begin(ctx)
//	// ... the business change ...
//	env, err := bus.DispatchTx(ctx, tx, edupulse.QuizSubmitted{...}, eventbus.Subject("quiz-42"))
//	// ...
//	err = tx.Commit(ctx)
//
// Dispatch, without Tx, records an event in a transaction of the bus's own.
// A program that opens the service (package service) gets a bus whose
// transaction type, service.Tx, is the same on PostgreSQL and on the
// embedded SQLite store.
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
// Dispatch, DispatchTx, Append and AppendTx return it, wrapped, for a draft that
// breaks one; test for it with errors.As.
type FieldError = event.FieldError

// DefaultMaxDataBytes is the largest event data the bus accepts unless
// configured otherwise.
const DefaultMaxDataBytes = 256 << 10

// Bus records events in a store. TTx is the store's transaction type: pgx.Tx
// for PostgreSQL, *sql.Tx for the embedded SQLite store, service.Tx for
// whichever of them a service opened. A Bus is safe for concurrent use.
//
// Each way of recording comes twice: Dispatch and Append run in a
// transaction of the bus's own, DispatchTx and AppendTx in the caller's.
type Bus[TTx any] struct {
	store        store.TxStore[TTx]
	registry     *event.Registry
	source       string
	maxData      int
	allowUnknown bool
	now          func() time.Time
	onCommit     func()
}

// Config configures a Bus. The zero Config is a bus that accepts typed
// payloads only, from a source named after the program.
type Config struct {
	// Registry holds the event types whose raw drafts the bus accepts
	// (Append). nil: an empty registry, so raw drafts are refused unless
	// AllowUnknownTypes is set. Typed payloads passed to Dispatch always
	// describe themselves.
	Registry *event.Registry
	// Source is the default source of recorded events: a URI-reference
	// (RFC 3986) of at most 255 bytes, such as "/quiz-service" (see
	// event.CheckSource; a source that breaks it fails every dispatch that
	// uses it). "": the program's name.
	Source string
	// MaxDataBytes is the largest event data accepted, in bytes. 0:
	// DefaultMaxDataBytes.
	MaxDataBytes int
	// AllowUnknownTypes lets raw drafts of types the registry does not
	// know through, checked only for being JSON. A gateway that forwards
	// events for newer producers sets it; they are stored and delivered
	// unchanged.
	AllowUnknownTypes bool
	// Now is the clock for default event times. nil: time.Now. Tests set it.
	Now func() time.Time
	// OnCommit, if set, is called after the bus has committed events in a
	// transaction of its own (Dispatch, Append). An in-process relay uses
	// it to wake up at once instead of at its next poll.
	OnCommit func()
}

// New returns a bus that records events in s.
func New[TTx any](s store.TxStore[TTx], cfg Config) *Bus[TTx] {
	b := &Bus[TTx]{store: s, registry: cfg.Registry, source: cfg.Source, maxData: cfg.MaxDataBytes,
		allowUnknown: cfg.AllowUnknownTypes, now: cfg.Now, onCommit: cfg.OnCommit}
	if b.registry == nil {
		b.registry = event.NewRegistry()
	}
	if b.source == "" {
		b.source = programSource()
	}
	if b.maxData == 0 {
		b.maxData = DefaultMaxDataBytes
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
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

// NewDraft encodes a typed payload as a draft, for Append and AppendTx. It
// checks the payload first.
func NewDraft(p event.Payload, opts ...DispatchOption) (event.Draft, error) {
	if isNilPayload(p) {
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

// Dispatch records one event in a transaction of the bus's own.
//
// The event gets a UUIDv7 ID, the current time, the correlation and
// causation of the event being handled in ctx (see event.WithCause), and the
// trace context of the span in ctx, unless options say otherwise.
//
// An event that breaks an input limit (DESIGN "Input limits": its type,
// source, subject or data) is not stored; the error wraps ErrInvalid and a
// *FieldError that names the field.
func (b *Bus[TTx]) Dispatch(ctx context.Context, p event.Payload, opts ...DispatchOption) (event.Envelope, error) {
	d, err := newCheckedDraft(p, opts)
	if err != nil {
		return event.Envelope{}, err
	}
	res, err := b.append(ctx, []event.Draft{d}, true)
	if err != nil {
		return event.Envelope{}, err
	}
	return res[0].Envelope, nil
}

// DispatchTx records one event inside tx, the caller's transaction: it
// commits or rolls back with tx, the transactional outbox. tx must not be
// nil: Dispatch is the call for a transaction of the bus's own. See
// Dispatch for the defaults it fills and the errors it returns.
func (b *Bus[TTx]) DispatchTx(ctx context.Context, tx TTx, p event.Payload, opts ...DispatchOption) (event.Envelope, error) {
	d, err := newCheckedDraft(p, opts)
	if err != nil {
		return event.Envelope{}, err
	}
	res, err := b.appendTx(ctx, tx, []event.Draft{d}, true)
	if err != nil {
		return event.Envelope{}, err
	}
	return res[0].Envelope, nil
}

// Append records drafts atomically in a transaction of the bus's own and
// reports, for each, whether its ID was already stored (the original is
// then returned). Drafts of types the registry knows are decoded and
// checked; see Dispatch for the defaults it fills.
func (b *Bus[TTx]) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	return b.append(ctx, drafts, false)
}

// AppendTx is Append inside tx, the caller's transaction: the drafts commit
// or roll back with it. tx must not be nil.
func (b *Bus[TTx]) AppendTx(ctx context.Context, tx TTx, drafts []event.Draft) ([]store.Appended, error) {
	return b.appendTx(ctx, tx, drafts, false)
}

// newCheckedDraft is NewDraft for Dispatch, with its error's prefix.
func newCheckedDraft(p event.Payload, opts []DispatchOption) (event.Draft, error) {
	d, err := NewDraft(p, opts...)
	if err != nil {
		return event.Draft{}, fmt.Errorf("eventbus: dispatch: %w", err)
	}
	return d, nil
}

// append prepares drafts and appends them in a transaction of the store's
// own. checked says that the drafts' data was encoded from payloads already
// validated: decoding that JSON again to check it would only cost time.
func (b *Bus[TTx]) append(ctx context.Context, drafts []event.Draft, checked bool) ([]store.Appended, error) {
	prepared, err := b.prepared(ctx, drafts, checked)
	if err != nil {
		return nil, err
	}
	res, err := b.store.Append(ctx, prepared)
	if err != nil {
		return nil, fmt.Errorf("eventbus: dispatch %d events: %w", len(drafts), err)
	}
	if b.onCommit != nil {
		b.onCommit()
	}
	return res, nil
}

// appendTx prepares drafts and appends them in tx; see append.
func (b *Bus[TTx]) appendTx(ctx context.Context, tx TTx, drafts []event.Draft, checked bool) ([]store.Appended, error) {
	prepared, err := b.prepared(ctx, drafts, checked)
	if err != nil {
		return nil, err
	}
	res, err := b.store.AppendTx(ctx, tx, prepared)
	if err != nil {
		return nil, fmt.Errorf("eventbus: dispatch %d events: %w", len(drafts), err)
	}
	return res, nil
}

// prepared returns a copy of drafts with their defaults filled, checked.
func (b *Bus[TTx]) prepared(ctx context.Context, drafts []event.Draft, checked bool) ([]event.Draft, error) {
	prepared := make([]event.Draft, len(drafts))
	copy(prepared, drafts)
	if err := b.prepare(ctx, prepared, checked); err != nil {
		return nil, fmt.Errorf("eventbus: dispatch: %w", err)
	}
	return prepared, nil
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
		origin := b.registry.Origin(d.Type)
		switch {
		case checked && origin != event.OriginFile:
			// Encoded from a typed payload that checked itself: it
			// describes itself, registered or not. A registered Go type
			// is its type's latest version.
			if d.DataSchema == "" {
				d.DataSchema, _ = b.registry.LatestSchema(d.Type)
			}
		case origin != "":
			// A raw draft of a known type, or a Go value of a type
			// declared by a schema file, which the schema checks.
			// The version the draft names, or the latest; the store
			// keeps which.
			urn, err := b.registry.CheckAs(d.Type, d.DataSchema, d.Data)
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			d.DataSchema = urn
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

// isNilPayload reports whether p is nil: a nil interface, or a nil pointer
// to a payload type, whose methods would dereference it.
func isNilPayload(p event.Payload) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}
