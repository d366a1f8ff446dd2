package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ProblemContentType is the media type of every error response (RFC 9457).
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

// Problem is an RFC 9457 problem detail, the body of every error response.
// It is also the error type the request decoders return.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Extension members.
	RequestID string            `json:"request_id,omitempty"`
	Field     string            `json:"field,omitempty"`  // the JSON field or parameter at fault
	Event     *int              `json:"event,omitempty"`  // the index of the event at fault in a batch
	Checks    map[string]string `json:"checks,omitempty"` // readiness checks, by name: ok or failing
	Resume    string            `json:"resume,omitempty"` // the cursor to resume a replay that stopped early

	header     http.Header
	retryAfter time.Duration
}

func newProblem(status int, typ, detail string) *Problem {
	return &Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail}
}

// Error implements error.
func (p *Problem) Error() string {
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
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
	body, err := json.Marshal(p)
	if err != nil { // only strings and ints: cannot happen
		body = []byte(`{"type":"` + ProblemInternal + `","title":"Internal server error","status":500}`)
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
