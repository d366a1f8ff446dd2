// Package wire holds the JSON bodies of the event bus's HTTP API: what
// `eventbus serve` answers and takes, as described by its OpenAPI document
// (GET /v1/openapi.json). The server (package httpapi) encodes them and the
// Go client (package client) decodes them, so that both agree by
// construction rather than by two copies kept in step.
//
// It is a leaf: it imports only the event package, uuid and the standard
// library. The service adapts its domain types (relay.Status,
// consume.DeadLetter, ...) to these; nothing here knows the store, the
// relay or the broker.
package wire

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// NewEvent is one event to publish (POST /v1/events). Only Type and Data
// are required; the server fills in the rest.
type NewEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	// ID makes publishing idempotent: sending an ID again stores nothing
	// new and answers the stored event. Default: a new UUIDv7.
	ID      uuid.UUID `json:"id,omitzero"`
	Subject string    `json:"subject,omitempty"`
	// ExpectedVersion, when set, is the version the stream (Subject) must
	// be at, else 409; 0 means the stream must not exist yet.
	ExpectedVersion *int64    `json:"expected_version,omitempty"`
	CorrelationID   uuid.UUID `json:"correlation_id,omitzero"`
	CausationID     uuid.UUID `json:"causation_id,omitzero"`
	Source          string    `json:"source,omitempty"`
	// DataSchema names the version of Data
	// (urn:edupulse:schema:{type}:{version}, see GET /v1/schemas); the
	// data is checked against that version. Default: the latest.
	DataSchema string `json:"dataschema,omitempty"`
	// Personal declares the personal data of an event whose type declares
	// none: they are stored encrypted and erased with their data subject.
	Personal *Personal `json:"personal,omitempty"`
}

// Personal is the "personal" member of a published event: whose data it
// is (the data subject's id) and which top-level fields of data are theirs.
type Personal struct {
	DataSubject string   `json:"data_subject"`
	Fields      []string `json:"fields"`
}

// NewEventBatch is a batch to publish atomically (POST /v1/events).
type NewEventBatch struct {
	Events []NewEvent `json:"events"`
}

// EventList is the answer to a published batch: the stored events in the
// order sent.
type EventList struct {
	Events []event.Envelope `json:"events"`
}

// EventPage is a page of GET /v1/events, in commit order. Next is the
// cursor to pass as after for the next page; a page with no events is the
// end, for now.
type EventPage struct {
	Events []event.Envelope `json:"events"`
	Next   string           `json:"next"`
}

// StreamPage is a page of GET /v1/streams/{subject}, in version order.
// NextVersion is the version to pass as from for the next page.
type StreamPage struct {
	Events      []event.Envelope `json:"events"`
	NextVersion int64            `json:"next_version"`
}

// Seconds is a duration that encodes in JSON as a number of seconds, with
// millisecond precision. It is never negative: a negative duration (the
// database's clock a little ahead of the process's) encodes as 0, and
// decodes as 0.
type Seconds time.Duration

// MarshalJSON encodes s as seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(max(time.Duration(s), 0).Seconds(), 'f', 3, 64)), nil
}

// UnmarshalJSON decodes a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f > float64(1<<63-1)/float64(time.Second) {
		return fmt.Errorf("wire: %.40q is not a number of seconds", b)
	}
	*s = Seconds(max(f, 0) * float64(time.Second))
	return nil
}

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) }

// Status is the relay's state (GET /v1/status).
type Status struct {
	Relay string `json:"relay"`
	// PartitionCount is the relay's partition count
	// (EVENTBUS_RELAY_PARTITIONS); Partitions lists each.
	PartitionCount int              `json:"partition_count"`
	Partitions     []PartitionState `json:"partitions"`
	// Processes are the relay's live processes (serve and serve
	// --relay-only) and how many partitions each holds.
	Processes []RelayProcess `json:"processes"`
	// Backlog counts events committed but not yet confirmed by the broker.
	Backlog int64 `json:"backlog"`
	// Lag is the age of the oldest event the broker has not confirmed,
	// held-back ones included.
	Lag    Seconds `json:"lag"`
	Events int64   `json:"events"`
	// Head is the cursor of the newest event readers can see, and
	// HeadPosition its global position: where a newest-first view (the
	// console's) starts reading back from.
	Head         string `json:"head"`
	HeadPosition int64  `json:"head_position"`
	// HeldBack counts committed events readers cannot see yet because a
	// transaction open for OldestTxAge holds them back.
	HeldBack    int64   `json:"held_back"`
	OldestTxAge Seconds `json:"oldest_tx_age"`
	// Parked counts the parked events (GET /v1/parked lists them).
	Parked int `json:"parked"`
	// Healthy is false when no relay holds a partition's lease, an event is
	// parked, or the lag is over the server's threshold; Problems says why.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// PartitionState is one relay partition in a Status.
type PartitionState struct {
	Partition int `json:"partition"`
	// Leader is the process holding the partition's lease; "" when none.
	Leader     string    `json:"leader"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Checkpoint is the cursor the relay has published up to, at
	// CheckpointPosition.
	Checkpoint         string    `json:"checkpoint"`
	CheckpointPosition int64     `json:"checkpoint_position"`
	UpdatedAt          time.Time `json:"updated_at"`
	// Backlog counts the partition's events the broker has not confirmed;
	// Lag is the age of the oldest of them.
	Backlog int64   `json:"backlog"`
	Lag     Seconds `json:"lag"`
}

// RelayProcess is one live relay process in a Status.
type RelayProcess struct {
	// Holder names it: host/pid/random suffix, as PartitionState.Leader.
	Holder string `json:"holder"`
	// Partitions is how many partitions it holds; 0 for a standby.
	Partitions int `json:"partitions"`
	// SeenUntil is when it counts as gone unless it is heard from again.
	SeenUntil time.Time `json:"seen_until"`
}

// Parked is an event the relay parked (GET /v1/parked): the broker refused
// it in a way that retrying cannot fix, or it waits behind such an event of
// its stream.
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

// RetryRequest is the body of POST /v1/parked/retry: EventIDs or All, not
// both.
type RetryRequest struct {
	EventIDs []uuid.UUID `json:"event_ids,omitempty"`
	All      bool        `json:"all,omitempty"`
}

// RetryResult answers POST /v1/parked/retry.
type RetryResult struct {
	// Requested are the events marked for retry, with those parked before
	// them in their streams.
	Requested []Parked `json:"requested"`
	// NotParked are the IDs asked for that are not parked.
	NotParked []uuid.UUID `json:"not_parked"`
}

// ReplayRequest is the JSON body of POST /v1/replay: the filters of GET
// /v1/events (but limit), the target and the pace. A request that names no
// filter is refused unless All is set.
type ReplayRequest struct {
	After         string    `json:"after,omitempty"`
	Types         []string  `json:"type,omitempty"`
	CorrelationID uuid.UUID `json:"correlation_id,omitzero"`
	Subject       string    `json:"subject,omitempty"`
	Since         time.Time `json:"since,omitzero"`
	Until         time.Time `json:"until,omitzero"`
	FromPosition  int64     `json:"from_position,omitempty"`
	ToPosition    int64     `json:"to_position,omitempty"`
	// Queue sends to this queue only; default: the server's exchange.
	Queue string `json:"queue,omitempty"`
	// Rate is at most this many events a second; 0: as fast as the broker
	// confirms.
	Rate   float64 `json:"rate,omitempty"`
	DryRun bool    `json:"dry_run,omitempty"`
	All    bool    `json:"all,omitempty"`
	// Stored sends the events in the version they were stored in, not
	// upcast to the latest.
	Stored bool `json:"stored,omitempty"`
}

// ReplayResult answers a replay that ran. Resume is the cursor after the
// last event sent.
type ReplayResult struct {
	ID        string `json:"id"`
	Published int64  `json:"published"`
	Total     int64  `json:"total"`
	Resume    string `json:"resume"`
	Complete  bool   `json:"complete"`
}

// ReplayPlan answers a dry run: how many events the replay would send, and
// the first of them.
type ReplayPlan struct {
	Events []event.Envelope `json:"events"`
	Total  int64            `json:"total"`
	DryRun bool             `json:"dry_run"`
}

// DeadLetter is a message a consumer group gave up on. Exactly one of
// Event (the message carried an event), Body (its body is other JSON) and
// BodyBase64 (its body is not JSON) is set.
type DeadLetter struct {
	MessageID  string          `json:"message_id"`
	Type       string          `json:"type,omitempty"`
	Queue      string          `json:"queue,omitempty"` // the queue it failed in
	Attempts   int             `json:"attempts"`
	Reason     string          `json:"reason,omitempty"`
	FailedAt   time.Time       `json:"failed_at,omitzero"`
	Event      *event.Envelope `json:"event,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 []byte          `json:"body_base64,omitempty"`
}

// DeadLetterList answers GET /v1/dead-letters/{group}.
type DeadLetterList struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// RequeueRequest is the body of POST /v1/dead-letters/{group}/requeue: the
// event or message IDs to requeue. No body requeues every dead letter.
type RequeueRequest struct {
	IDs []string `json:"ids"`
}

// RequeueResult answers a requeue.
type RequeueResult struct {
	Requeued int `json:"requeued"`
}

// Health answers GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// Ready answers GET /readyz when every check passes: each check by name,
// "ok".
type Ready struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Erasure answers POST /v1/data-subjects/{id}/erase: the subject erased,
// when it was first erased, and the ID of the datasubject.erased event
// this request recorded.
type Erasure struct {
	DataSubject string    `json:"data_subject"`
	ErasedAt    time.Time `json:"erased_at"`
	EventID     string    `json:"event_id,omitempty"`
}

// Schemas is the answer of GET /v1/schemas: every event type the server
// knows (registered in Go, or declared by a schema file), with its origin,
// versions and their JSON Schemas.
type Schemas struct {
	Types []event.TypeInfo `json:"types"`
}
