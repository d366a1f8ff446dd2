package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
)

// Sentinels that an [*Error] matches with errors.Is, by its problem type
// or status, so that callers need not know the problem URNs.
var (
	// ErrInvalidRequest: the request was malformed, or a parameter wrong
	// (400); Field names it.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidEvent: an event was refused for what it holds: a wrong
	// envelope field (400), an unknown type or data that does not fit its
	// type (422). Field names the field, Event the event of a batch.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnauthorized: no token, or one the server does not know (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token lacks the call's scope (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such event, queue or parked event (404).
	ErrNotFound = errors.New("not found")
	// ErrVersionConflict: expected_version did not match the stream (409).
	ErrVersionConflict = errors.New("stream version conflict")
	// ErrTooLarge: the body or an event's data is over the limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrNotImplemented: the operation is not enabled on the server (501).
	ErrNotImplemented = errors.New("not implemented on the server")
	// ErrUnavailable: the server cannot reach its store or broker, or is
	// not ready (503); retry after RetryAfter.
	ErrUnavailable = errors.New("unavailable")

	// ErrUnreachable: no answer came, because the connection failed.
	ErrUnreachable = errors.New("server unreachable")
	// ErrBadAnswer: an answer came that the client cannot read: not JSON,
	// or not the shape the API documents.
	ErrBadAnswer = errors.New("unreadable answer")
)

// Error is an error answer of the server: its RFC 9457 problem document.
// Type is the stable URN to switch on (wire.Problem* constants); Detail
// says what was wrong and what to do.
type Error struct {
	wire.Problem
	// Call is the request, such as "GET /v1/events/{id}".
	Call string
	// RetryAfter is the server's Retry-After, for a 503; 0 when absent.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	msg := fmt.Sprintf("eventbus client: %s: the server answered %d %s", e.Call, e.Status, e.Title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	return msg
}

// Is matches the sentinel errors of this package.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalidRequest:
		return e.Type == wire.ProblemMalformedRequest || e.Type == wire.ProblemInvalidParameter ||
			e.Type == wire.ProblemUnsupportedMediaType || (e.Status == http.StatusBadRequest && e.Type != wire.ProblemInvalidEvent)
	case ErrInvalidEvent:
		return e.Type == wire.ProblemInvalidEvent || e.Type == wire.ProblemUnknownType || e.Type == wire.ProblemInvalidData
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrVersionConflict:
		return e.Type == wire.ProblemVersionConflict
	case ErrTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge
	case ErrNotImplemented:
		return e.Status == http.StatusNotImplemented
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	}
	return false
}
