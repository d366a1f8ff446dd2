package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
)

// ProblemContentType is the media type of every error response (RFC 9457).
const ProblemContentType = wire.ProblemContentType

// Problem types: stable identifiers that clients switch on (see package
// wire, where they are defined for the server and the client alike).
const (
	ProblemMalformedRequest     = wire.ProblemMalformedRequest
	ProblemInvalidEvent         = wire.ProblemInvalidEvent
	ProblemInvalidParameter     = wire.ProblemInvalidParameter
	ProblemUnauthorized         = wire.ProblemUnauthorized
	ProblemForbidden            = wire.ProblemForbidden
	ProblemNotFound             = wire.ProblemNotFound
	ProblemMethodNotAllowed     = wire.ProblemMethodNotAllowed
	ProblemVersionConflict      = wire.ProblemVersionConflict
	ProblemConcurrentAppend     = wire.ProblemConcurrentAppend
	ProblemTooLarge             = wire.ProblemTooLarge
	ProblemUnsupportedMediaType = wire.ProblemUnsupportedMediaType
	ProblemUnknownType          = wire.ProblemUnknownType
	ProblemInvalidData          = wire.ProblemInvalidData
	ProblemInternal             = wire.ProblemInternal
	ProblemStoreDamaged         = wire.ProblemStoreDamaged
	ProblemNotImplemented       = wire.ProblemNotImplemented
	ProblemUnavailable          = wire.ProblemUnavailable
	ProblemNotReady             = wire.ProblemNotReady
)

var problemTitles = map[string]string{
	ProblemMalformedRequest:     "Malformed request",
	ProblemInvalidEvent:         "Invalid event",
	ProblemInvalidParameter:     "Invalid parameter",
	ProblemUnauthorized:         "Unauthorized",
	ProblemForbidden:            "Forbidden",
	ProblemNotFound:             "Not found",
	ProblemMethodNotAllowed:     "Method not allowed",
	ProblemVersionConflict:      "Stream version conflict",
	ProblemConcurrentAppend:     "Event stored concurrently",
	ProblemTooLarge:             "Content too large",
	ProblemUnsupportedMediaType: "Unsupported media type",
	ProblemUnknownType:          "Unknown event type",
	ProblemInvalidData:          "Invalid event data",
	ProblemInternal:             "Internal server error",
	ProblemStoreDamaged:         "Event store damaged",
	ProblemNotImplemented:       "Not implemented",
	ProblemUnavailable:          "Service unavailable",
	ProblemNotReady:             "Not ready",
}

// Problem is an RFC 9457 problem detail, the body of every error response:
// the wire's Problem, and what the server adds to the answer's headers. It
// is also the error type the request decoders return.
type Problem struct {
	wire.Problem

	header     http.Header
	retryAfter time.Duration
}

func newProblem(status int, typ, detail string) *Problem {
	return &Problem{Problem: wire.Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail}}
}

// atField sets the field at fault.
func (p *Problem) atField(field string) *Problem {
	p.Field = field
	return p
}

// atEvent sets the index of the event at fault.
func (p *Problem) atEvent(i int) *Problem {
	p.Event = &i
	return p
}

// writeProblem answers with p. It fills the instance (the request path) and
// the request ID.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	info := infoFrom(r.Context())
	if info != nil {
		p.RequestID = info.id
		info.problem = p.Type
	}
	p.Instance = r.URL.Path
	// Without HTML escaping: a detail such as "/grade: must be <= 100"
	// reads as written in a terminal, and problem+json is never HTML.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	body := []byte(`{"type":"` + ProblemInternal + `","title":"Internal server error","status":500}`)
	if err := enc.Encode(p); err == nil { // only strings and ints: it cannot fail
		body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(max(time.Second, p.retryAfter).Round(time.Second)/time.Second)))
	}
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}
