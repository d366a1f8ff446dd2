package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// Admin holds the operations behind the admin routes. The packages that
// implement them (replay, the dead-letter tools) are wired in by the caller;
// a nil func makes its route answer 501.
type Admin struct {
	// Replay sends the stored events that match req again.
	Replay func(ctx context.Context, req ReplayRequest) (ReplayResult, error)
	// DeadLetters lists up to limit messages of a dead-letter queue, leaving
	// them in it.
	DeadLetters func(ctx context.Context, queue string, limit int) ([]DeadLetter, error)
	// Requeue sends dead-lettered messages back to the queue they failed in:
	// those whose event IDs are given, or all when ids is empty. It returns
	// how many it sent.
	Requeue func(ctx context.Context, queue string, ids []uuid.UUID) (int, error)
}

// ReplayRequest is what POST /v1/replay asks for. Its query takes the
// filter parameters of GET /v1/events (but limit), and queue, dry_run, rate
// and max.
type ReplayRequest struct {
	// Filter selects the events, in commit order. Its Limit is 0: the
	// replayer pages as it likes.
	Filter store.Filter
	// Queue, when set, receives the events directly; else the exchange does,
	// and so every bound queue.
	Queue string
	// DryRun counts the events without sending them.
	DryRun bool
	// Rate bounds the events sent per second; 0 means no bound.
	Rate float64
	// Max bounds the events sent; 0 means no bound.
	Max int64
}

// ReplayResult is the answer of POST /v1/replay.
type ReplayResult struct {
	ID        string `json:"id,omitempty"` // the replay's ID, in the x-eventbus-replay header of what it sent
	Matched   int64  `json:"matched"`
	Published int64  `json:"published"`
	DryRun    bool   `json:"dry_run"`
}

// DeadLetter is one message in a dead-letter queue.
type DeadLetter struct {
	MessageID string    `json:"message_id"`
	Type      string    `json:"type,omitempty"`
	Queue     string    `json:"failed_queue,omitempty"` // the queue it failed in
	Attempt   int64     `json:"attempt,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	FailedAt  time.Time `json:"failed_at,omitzero"`
	// Body is the message body, normally a CloudEvent. It is answered byte
	// for byte as "body" when it is JSON, else base64 as "body_base64".
	Body []byte `json:"-"`
}

var replayParams = []string{"after", "type", "correlation_id", "subject", "since", "until", "queue", "dry_run", "rate", "max"}

// parseReplay parses the query of POST /v1/replay. Every error is a
// *Problem with status 400.
func parseReplay(rawQuery string) (ReplayRequest, error) {
	var req ReplayRequest
	q, p := parseQuery(rawQuery, replayParams, []string{"type"})
	if p != nil {
		return req, p
	}
	if req.Filter, p = filterFrom(q); p != nil {
		return req, p
	}
	if v := q.get("queue"); v != "" {
		if req.Queue, p = parseQueueName(v); p != nil {
			return req, p
		}
	}
	if v := q.get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("dry_run %s must be true or false", clip(v))).atField("dry_run")
		}
		req.DryRun = b
	}
	if v := q.get("rate"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 1e9 {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("rate %s must be a positive number of events per second", clip(v))).atField("rate")
		}
		req.Rate = r
	}
	if v := q.get("max"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("max %s must be a whole number from 1", clip(v))).atField("max")
		}
		req.Max = n
	}
	return req, nil
}

// parseQueueName checks a queue name as AMQP bounds it: 1 to 255 bytes of
// printable UTF-8.
func parseQueueName(name string) (string, *Problem) {
	ok := name != "" && len(name) <= 255 && utf8.ValidString(name)
	for _, c := range name {
		ok = ok && unicode.IsPrint(c)
	}
	if !ok {
		return "", newProblem(400, ProblemInvalidParameter, fmt.Sprintf("queue %s must be 1 to 255 bytes of printable text", clip(name))).atField("queue")
	}
	return name, nil
}

func (a *api) replay(w http.ResponseWriter, r *http.Request) {
	if a.admin.Replay == nil {
		writeProblem(w, r, notConfigured("replay"))
		return
	}
	req, err := parseReplay(r.URL.RawQuery)
	if err != nil {
		writeProblem(w, r, err.(*Problem))
		return
	}
	res, err := a.admin.Replay(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeValue(w, r, http.StatusOK, res)
}

func (a *api) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	if a.admin.DeadLetters == nil {
		writeProblem(w, r, notConfigured("the dead-letter browser"))
		return
	}
	queue, p := parseQueueName(r.PathValue("queue"))
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	q, p := parseQuery(r.URL.RawQuery, []string{"limit"}, nil)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	limit, p := parseLimit(q.get("limit"))
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	letters, err := a.admin.DeadLetters(r.Context(), queue, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	buf := []byte(`{"dead_letters":[`)
	for i, dl := range letters {
		if i > 0 {
			buf = append(buf, ',')
		}
		meta, err := json.Marshal(dl)
		if err != nil {
			a.fail(w, r, fmt.Errorf("encode dead letter: %w", err))
			return
		}
		buf = append(buf, meta[:len(meta)-1]...) // without its closing brace
		if json.Valid(dl.Body) {
			buf = append(buf, `,"body":`...)
			buf = append(buf, dl.Body...)
		} else {
			buf = append(buf, `,"body_base64":"`...)
			buf = base64.StdEncoding.AppendEncode(buf, dl.Body)
			buf = append(buf, '"')
		}
		buf = append(buf, '}')
	}
	writeJSON(w, http.StatusOK, append(buf, "]}"...))
}

func (a *api) requeueDeadLetters(w http.ResponseWriter, r *http.Request) {
	if a.admin.Requeue == nil {
		writeProblem(w, r, notConfigured("requeueing dead letters"))
		return
	}
	queue, p := parseQueueName(r.PathValue("queue"))
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	body, p := a.readBody(r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	ids := []uuid.UUID{}
	if len(body) > 0 {
		if p := checkJSONBody(r); p != nil {
			writeProblem(w, r, p)
			return
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeProblem(w, r, newProblem(400, ProblemMalformedRequest,
				`the body must be {"ids": ["<event id>", ...]}, or empty to requeue every dead letter`))
			return
		}
		for _, s := range req.IDs {
			id, err := uuid.Parse(s)
			if err != nil {
				writeProblem(w, r, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("ids: %s is not a UUID", clip(s))).atField("ids"))
				return
			}
			ids = append(ids, id)
		}
	}
	n, err := a.admin.Requeue(r.Context(), queue, ids)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"requeued":`+strconv.Itoa(n)+`}`))
}
