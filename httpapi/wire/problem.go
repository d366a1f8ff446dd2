package wire

import (
	"fmt"

	"github.com/edupulse/eventbus/event"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem types: stable identifiers that clients switch on. They are URNs,
// not links: nothing is served at them.
const (
	problemBase                 = "urn:eventbus:problem:"
	ProblemMalformedRequest     = problemBase + "malformed-request"      // 400: the body is not the JSON expected
	ProblemInvalidEvent         = problemBase + "invalid-event"          // 400: an envelope field is missing or wrong
	ProblemInvalidParameter     = problemBase + "invalid-parameter"      // 400: a query or path parameter is wrong
	ProblemUnauthorized         = problemBase + "unauthorized"           // 401
	ProblemForbidden            = problemBase + "forbidden"              // 403
	ProblemNotFound             = problemBase + "not-found"              // 404
	ProblemMethodNotAllowed     = problemBase + "method-not-allowed"     // 405
	ProblemVersionConflict      = problemBase + "version-conflict"       // 409: expected_version did not match
	ProblemConcurrentAppend     = problemBase + "concurrent-append"      // 409: the same id was being stored at once; retry
	ProblemTooLarge             = problemBase + "too-large"              // 413: the body or an event's data is over the limit
	ProblemUnsupportedMediaType = problemBase + "unsupported-media-type" // 415
	ProblemUnknownType          = problemBase + "unknown-type"           // 422: the event type is not registered
	ProblemInvalidData          = problemBase + "invalid-data"           // 422: the data does not fit the event type
	ProblemInternal             = problemBase + "internal"               // 500
	ProblemStoreDamaged         = problemBase + "store-damaged"          // 500: the store's file is corrupt; retrying does not help
	ProblemNotImplemented       = problemBase + "not-implemented"        // 501: the operation is not configured
	ProblemUnavailable          = problemBase + "unavailable"            // 503: the store or broker cannot be reached, or a transaction conflicted; retry
	ProblemNotReady             = problemBase + "not-ready"              // 503: a readiness check failed
)

// Problem is an RFC 9457 problem detail, the body of every error answer.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"` // the request path
	// Extension members.
	RequestID string            `json:"request_id,omitempty"`
	Field     string            `json:"field,omitempty"`  // the JSON field or parameter at fault
	Event     *int              `json:"event,omitempty"`  // the index of the event at fault in a batch
	Checks    map[string]string `json:"checks,omitempty"` // readiness checks, by name: ok, failing or damaged
	Resume    string            `json:"resume,omitempty"` // the cursor to resume a replay that stopped early
	// Errors lists how an event's data breaks its type's schema (422
	// invalid-data): the JSON Pointer of each value at fault in the data,
	// the schema keyword broken and a message; at most
	// event.MaxViolations of them, Detail saying how many were left out.
	Errors []event.Violation `json:"errors,omitempty"`
}

// Error implements error: the status, the title and the detail.
func (p *Problem) Error() string {
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}
