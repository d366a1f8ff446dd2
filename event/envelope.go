// Package event defines the envelope that wraps every domain event on the
// EduPulse bus, its CloudEvents 1.0 wire encoding, and the registry of the
// event types a build knows.
//
// An [Envelope] is what the store returns and what the broker carries. A
// [Draft] is an event on its way in: the bus fills its defaults, checks it
// against a [Registry], and hands it to the store, which assigns its position,
// stream version and recording time.
//
// A [Registry] knows each type's versions, each described by a JSON Schema
// (draft 2020-12): types registered in Go ([Register], with [Version]s and
// their upcasters) and types declared by schema files ([ReadSchemaDir],
// [LoadSchemaDir]). An event names the version of its data in its
// DataSchema; [Registry.Upcast], the read transform, turns older versions
// into the latest unless the context asks for the stored ones
// ([WithStoredVersions]).
//
// The envelope keeps its data as raw JSON bytes. An event whose type this build
// does not know is therefore stored, read, encoded and replayed unchanged
// (guarantee G6): nothing here ever decodes data it cannot describe.
//
// It is the bottom of the architecture: it imports no other package of the
// bus, and every other package (the bus, the stores, the brokers, the relay,
// the consumer runtime, the HTTP API) speaks in its types.
package event

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Envelope is one stored event with its identity and trace metadata.
type Envelope struct {
	// ID identifies the event. It is a UUIDv7 unless the producer chose one.
	ID uuid.UUID
	// Type names the kind of event, for example "quiz.submitted". It is also
	// the routing key on the broker.
	Type string
	// Source identifies the producer, for example "quiz-service".
	Source string
	// Subject is the stream the event belongs to, or "" for none.
	Subject string
	// StreamVersion is the event's 1-based place in Subject, or 0 when the
	// event belongs to no stream. Consumers order a stream by it.
	StreamVersion int64
	// OccurredAt is when the event happened, as the producer saw it.
	OccurredAt time.Time
	// RecordedAt is when the store wrote the event.
	RecordedAt time.Time
	// CorrelationID ties together every event caused by one request.
	CorrelationID uuid.UUID
	// CausationID is the ID of the event that caused this one, or uuid.Nil.
	CausationID uuid.UUID
	// TraceParent and TraceState carry the W3C trace context of the
	// producer's span, when there was one.
	TraceParent string
	TraceState  string
	// DataSchema names the version of Data: for a type the registry
	// knows, urn:edupulse:schema:{type}:{version} (see SchemaURN). Readers
	// get the latest version unless they ask for the stored one. For a
	// type this build does not know it is what the producer sent, if
	// anything.
	DataSchema string
	// Position is the global position (event_store.id). It is unique and
	// increases in insert order, which is not always commit order: order a
	// stream by StreamVersion, and page the store with its cursors.
	Position int64
	// CommitOrder is the store's commit-order key. Together with Position it
	// forms the cursor that readers tail the store by. It is not part of the
	// wire encoding.
	CommitOrder uint64
	// Data is the event's payload, exactly as the producer encoded it.
	// Its personal fields (see PersonalSpec) read as the producer wrote
	// them, or as null once their data subject is erased.
	Data json.RawMessage
	// Erased is true when the event had personal data of a data subject
	// who has been erased: those fields of Data are null. On the wire it
	// is the extension attribute "erased".
	Erased bool
}

// Draft is an event that has not been stored yet.
//
// Only Type and Data are required. The bus fills the rest: a UUIDv7 ID, the
// current time, a correlation ID (from the context, or a new one), the
// causation ID of the event being handled, and the trace context of the span
// in the context.
type Draft struct {
	ID      uuid.UUID
	Type    string
	Source  string
	Subject string
	// ExpectedVersion, when set, is the version the stream must be at just
	// before this event is appended (0: the stream must not exist yet). A
	// mismatch fails the whole batch with store.ErrVersionConflict.
	ExpectedVersion *int64
	OccurredAt      time.Time
	CorrelationID   uuid.UUID
	CausationID     uuid.UUID
	TraceParent     string
	TraceState      string
	// DataSchema names the version of Data (SchemaURN). Empty: the latest
	// version of the type, which the bus fills in.
	DataSchema string
	Data       json.RawMessage
	// Personal declares the personal data of an event whose type declares
	// none (the "personal" field of POST /v1/events); nil for none.
	Personal *PersonalData
}

// Expect returns a pointer to v, for Draft.ExpectedVersion.
func Expect(v int64) *int64 { return &v }

// TimePrecision is the precision events keep their times at. PostgreSQL
// stores microseconds, so the bus truncates to them before storing: an event
// then reads back exactly as it was dispatched.
const TimePrecision = time.Microsecond
