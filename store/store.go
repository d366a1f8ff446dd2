// Package store defines the event store: the append-only record of every
// event, which is also the outbox the relay publishes from.
//
// The interfaces here are implemented by store/postgres (production) and
// store/sqlite (the embedded default). Both pass the conformance suite in
// store/storetest, which is the executable form of the contract below.
//
// # Reading in commit order
//
// Positions are unique and increase in insert order, but transactions commit
// in another order. A reader that paged by position would skip an event whose
// transaction committed after a later position had been read. Readers here
// page by [Cursor] instead: it encodes a commit-order key that only ever
// grows for events a reader has not yet seen (guarantee G4).
package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// Sentinel errors. Implementations wrap them, with context, so that callers
// test them with errors.Is.
var (
	// ErrVersionConflict reports that a stream was not at the version a
	// draft expected. Nothing of the batch was stored.
	ErrVersionConflict = errors.New("stream version conflict")
	// ErrNotFound reports that no event has the requested ID.
	ErrNotFound = errors.New("event not found")
	// ErrConcurrentAppend reports that another transaction stored an event
	// with the same ID while this one was appending it. Nothing of the batch
	// was stored; retrying returns the stored original.
	ErrConcurrentAppend = errors.New("event stored concurrently")
	// ErrTxConflict reports that the database cancelled the transaction to
	// break a deadlock, or for a serialization conflict: nothing of it
	// took effect, and running the whole transaction again is safe. It
	// happens when transactions dispatch to several streams in separate
	// calls, taking the streams' locks in different orders.
	ErrTxConflict = errors.New("transaction conflict, retry it")
	// ErrLeaseLost reports that a relay partition's lease is held by another
	// relay, so this one must stop publishing.
	ErrLeaseLost = errors.New("relay lease lost")
	// ErrUnavailable reports that the store cannot be reached.
	ErrUnavailable = errors.New("store unavailable")
	// ErrCorrupt reports that the store's data is damaged (a corrupted
	// page of the SQLite file, or a file that is not a database). It is
	// not transient: retrying does not help, restoring a backup does.
	ErrCorrupt = errors.New("store file damaged")
	// ErrBadCursor reports a cursor token that this store did not issue.
	ErrBadCursor = errors.New("bad cursor")
	// ErrBadFilter reports a filter no event could match because a store
	// cannot even hold its text (see CheckFilter).
	ErrBadFilter = errors.New("bad filter")
)

// Appended is the outcome of appending one draft.
type Appended struct {
	Envelope event.Envelope
	// Duplicate is true when an event with the draft's ID was already
	// stored; Envelope is then the original, and nothing new was written.
	Duplicate bool
}

// Filter selects events read in commit order. The zero Filter reads every
// event from the beginning, DefaultLimit at a time.
type Filter struct {
	After         Cursor    // read events after this cursor
	Limit         int       // at most this many; 0 means DefaultLimit
	Types         []string  // any of these types
	CorrelationID uuid.UUID // with this correlation ID
	Subject       string    // in this stream
	Since         time.Time // occurred at or after
	Until         time.Time // occurred before
	FromPosition  int64     // global position at least this, when > 0
	ToPosition    int64     // global position at most this, when > 0
}

// Selective reports whether f selects fewer than every stored event: it
// names a type, correlation ID, stream, time bound, position bound, or a
// cursor to go on after. The CLI and the HTTP API refuse a replay that is
// not selective unless the user says "all": replaying the whole store is
// never an accident.
func (f Filter) Selective() bool {
	return !f.After.IsZero() || len(f.Types) > 0 || f.CorrelationID != uuid.Nil || f.Subject != "" ||
		!f.Since.IsZero() || !f.Until.IsZero() || f.FromPosition > 0 || f.ToPosition > 0
}

// Paging limits.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// EffectiveLimit returns the limit a read with f uses.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

// ShortWindow is the longest time window whose bounds a store probes hour
// by hour only: such a window has at most 48 hours at its two edges, which
// the hour probes cover anyway, so a day level would save no probe.
const ShortWindow = 48 * time.Hour

// ProbesDays reports whether f's time window is worth bounding day by day:
// it is open on one side, or longer than ShortWindow.
func (f Filter) ProbesDays() bool {
	if f.Since.IsZero() && f.Until.IsZero() {
		return false
	}
	return f.Since.IsZero() || f.Until.IsZero() || f.Until.Sub(f.Since) > ShortWindow
}

// DistinctTypes returns f's types without repeats, in their order: a read
// walks each type once.
func (f Filter) DistinctTypes() []string {
	if len(f.Types) < 2 {
		return f.Types
	}
	seen := make(map[string]bool, len(f.Types))
	out := make([]string, 0, len(f.Types))
	for _, t := range f.Types {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// Page is one page of events in commit order.
type Page struct {
	Events []event.Envelope
	// Next is the cursor to read the following page from. When the page is
	// empty it is the filter's own cursor.
	Next Cursor
}

// PageAfter is the page of events that a read after cursor after returned:
// Next is the last event's cursor, or after itself when there is none, so
// that reading on from Next neither repeats nor skips an event. Every
// store's Read ends with it.
func PageAfter(after Cursor, events []event.Envelope) Page {
	page := Page{Events: events, Next: after}
	if len(events) > 0 {
		page.Next = CursorOf(events[len(events)-1])
	}
	return page
}

// Reader reads the event store.
type Reader interface {
	// Read returns the committed events that match f, in commit order,
	// after f.After. It never skips an event whose transaction commits late:
	// such an event is held back until it can be returned in order.
	Read(ctx context.Context, f Filter) (Page, error)
	// ReadStream returns the events of one stream in version order, from
	// version fromVersion on.
	ReadStream(ctx context.Context, subject string, fromVersion int64, limit int) ([]event.Envelope, error)
	// Get returns the event with the given ID, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (event.Envelope, error)
	// Count returns how many events Read would return with f, page after
	// page, from f.After on; f.Limit is ignored.
	Count(ctx context.Context, f Filter) (int64, error)
}

// Store is an event store with its relay and inbox bookkeeping.
type Store interface {
	Reader
	// Append stores drafts atomically in a transaction of its own. Drafts
	// must be complete (see CheckDrafts). A draft whose ID is already stored
	// is returned as the original, flagged Duplicate.
	Append(ctx context.Context, drafts []event.Draft) ([]Appended, error)
	Leases
	Partitions
	Parking
	// Stats returns figures for status reports and metrics.
	Stats(ctx context.Context) (Stats, error)
	// Backlog counts the events committed after c, up to limit.
	Backlog(ctx context.Context, c Cursor, limit int) (int64, error)
	// Ping checks that the store can be reached.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Migrator is implemented by stores whose schema is versioned. Migrations
// never edit history: a schema change is a new version.
type Migrator interface {
	// Migrate applies the versions the schema lacks.
	Migrate(ctx context.Context) error
	// SchemaVersion returns the version the schema is at, and the newest
	// this build knows.
	SchemaVersion(ctx context.Context) (current, latest int64, err error)
}

// TxStore is a Store that can also append inside a transaction the caller
// owns (the transactional outbox) and run consumer handlers once per event.
// TTx is the transaction type of the store's driver: pgx.Tx for PostgreSQL,
// *sql.Tx for SQLite.
type TxStore[TTx any] interface {
	Store
	// AppendTx stores drafts in tx. They commit or roll back with it. When
	// tx is nil, AppendTx is Append.
	//
	// On PostgreSQL an error leaves tx aborted, as any failed statement
	// does: roll it back. ErrConcurrentAppend and ErrTxConflict say that
	// running the transaction again will do; ErrVersionConflict says that
	// the stream moved on: read it again and decide anew.
	AppendTx(ctx context.Context, tx TTx, drafts []event.Draft) ([]Appended, error)
	Inbox[TTx]
}

// Inbox records which events a consumer group has handled, so that a
// redelivered event takes effect once.
type Inbox[TTx any] interface {
	// HandleOnce runs fn inside a transaction that also records that group
	// handled event id. If the record already exists, fn does not run and
	// handled is false. If fn fails, nothing is recorded.
	HandleOnce(ctx context.Context, group string, id uuid.UUID, fn func(ctx context.Context, tx TTx) error) (handled bool, err error)
	// MarkHandled records that group handled id, outside any handler
	// transaction. It reports false when the record already existed.
	MarkHandled(ctx context.Context, group string, id uuid.UUID) (bool, error)
	// Handled reports whether group has handled id.
	Handled(ctx context.Context, group string, id uuid.UUID) (bool, error)
}

// Stats are figures about the store for status reports.
type Stats struct {
	// Events is the number of stored events (an estimate on large stores).
	Events int64
	// Head is the cursor of the newest event a reader can see now.
	Head Cursor
	// HeldBack counts events that have committed but that readers cannot see
	// yet, because an older transaction is still open.
	HeldBack int64
	// OldestHeldBack is when the oldest of those events was recorded; zero
	// when none is held back. No reader, the relay included, has seen it,
	// so the relay's lag counts from it.
	OldestHeldBack time.Time
	// OldestTxAge is how long the oldest open writing transaction has been
	// running: the time it can hold readers back.
	OldestTxAge time.Duration
}
