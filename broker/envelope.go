package broker

import (
	"fmt"
	"strconv"

	"github.com/edupulse/eventbus/event"
)

// Headers the bus sets on messages.
const (
	HeaderTraceParent   = "traceparent"
	HeaderTraceState    = "tracestate"
	HeaderPosition      = "x-eventbus-position"       // global position, decimal string
	HeaderStreamVersion = "x-eventbus-stream-version" // decimal string
	HeaderSubject       = "x-eventbus-subject"
	// HeaderErased is "true" on an event whose personal data was erased
	// (the CloudEvents attribute erased, in the body, says it too).
	HeaderErased = "x-eventbus-erased"
	// HeaderDataSchema is the version of the data the message carries, as
	// the body's dataschema attribute says it (urn:edupulse:schema:{type}:{version}).
	HeaderDataSchema = "x-eventbus-dataschema"
	// HeaderReplay marks a message sent again by replay: its value is the
	// replay's ID.
	HeaderReplay = "x-eventbus-replay"
	// Set by the consumer runtime on retried and dead-lettered messages.
	HeaderAttempt       = "x-eventbus-attempt"        // int64, the attempt that failed
	HeaderFailureReason = "x-eventbus-failure-reason" // the last error
	HeaderFailedAt      = "x-eventbus-failed-at"      // RFC 3339
	HeaderFailedQueue   = "x-eventbus-failed-queue"   // the queue the message failed in
)

// EnvelopeMessage maps an envelope to the message the relay and replay
// publish: the CloudEvents JSON as the body, the identity in the AMQP
// properties, and the trace context and position in headers too, so that
// tools that do not parse bodies can still follow them.
func EnvelopeMessage(env event.Envelope) (Message, error) {
	body, err := event.Encode(env)
	if err != nil {
		return Message{}, fmt.Errorf("broker: encode event %s: %w", env.ID, err)
	}
	headers := map[string]any{
		HeaderPosition: strconv.FormatInt(env.Position, 10),
		// Sharded consumer groups route by it (see Buckets).
		HeaderBucket: strconv.Itoa(BucketOf(env)),
	}
	if env.TraceParent != "" {
		headers[HeaderTraceParent] = env.TraceParent
	}
	if env.TraceState != "" {
		headers[HeaderTraceState] = env.TraceState
	}
	if env.DataSchema != "" {
		headers[HeaderDataSchema] = env.DataSchema
	}
	if env.Subject != "" {
		headers[HeaderSubject] = env.Subject
		headers[HeaderStreamVersion] = strconv.FormatInt(env.StreamVersion, 10)
	}
	if env.Erased {
		headers[HeaderErased] = "true"
	}
	return Message{
		MessageID:     env.ID.String(),
		CorrelationID: env.CorrelationID.String(),
		Type:          env.Type,
		AppID:         env.Source,
		ContentType:   event.ContentType,
		Timestamp:     env.OccurredAt,
		Headers:       headers,
		Body:          body,
	}, nil
}

// DecodeMessage reads the envelope a message carries. A message that is not a
// CloudEvents JSON envelope gets an error wrapping event.ErrMalformed: the
// consumer runtime dead-letters it at once rather than retry it.
func DecodeMessage(m Message) (event.Envelope, error) {
	if m.ContentType != "" && !event.IsJSONMediaType(m.ContentType) {
		return event.Envelope{}, fmt.Errorf("%w: content type %q is not CloudEvents JSON", event.ErrMalformed, m.ContentType)
	}
	return event.Decode(m.Body)
}
