package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/store"
)

// Admin holds the operations behind the admin routes, bound to the store and
// the broker by the caller, in the wire's terms: service.HTTPAdmin binds
// them to replay.Run, consume.DeadLetters, consume.Requeue and
// relay.RequestRetry. A nil func makes its route answer 501. A replay's dry
// run needs no func: it only reads the store.
type Admin struct {
	// Replay sends stored events again (POST /v1/replay). When it stops
	// early it returns, with the error, how far it got.
	Replay func(ctx context.Context, req ReplayRequest) (wire.ReplayResult, error)
	// Exchange is where a replay goes when the request names no queue.
	Exchange string
	// DeadLetters lists a consumer group's dead letters, leaving them in
	// place (GET /v1/dead-letters/{group}).
	DeadLetters func(ctx context.Context, group string, limit int) ([]wire.DeadLetter, error)
	// Requeue moves the dead letters whose event or message IDs ids
	// lists (every one when ids is nil) back to the group's queue
	// (POST /v1/dead-letters/{group}/requeue).
	Requeue func(ctx context.Context, group string, ids []string) (int, error)
	// RetryParked marks parked events for retry by the leading relay
	// (POST /v1/parked/retry): those with ids, or every one with all.
	RetryParked func(ctx context.Context, ids []uuid.UUID, all bool) (wire.RetryResult, error)
	// Erase erases a data subject (POST /v1/data-subjects/{id}/erase): it
	// destroys the subject's key and records a datasubject.erased event
	// naming by, who asked.
	Erase func(ctx context.Context, subject, by string) (wire.Erasure, error)
}

// ReplayRequest is a replay that POST /v1/replay asks Admin.Replay to run.
type ReplayRequest struct {
	// Filter selects the events; Filter.After resumes after a cursor.
	Filter store.Filter
	// Exactly one of Queue (one consumer group's queue) and Exchange is
	// set.
	Queue, Exchange string
	// Rate is at most this many events a second; 0: as fast as the broker
	// confirms.
	Rate float64
	// Progress, when set, is to be called as events are confirmed, with
	// the result so far: the API bounds a replay by its progress.
	Progress func(wire.ReplayResult)
}

// drySample is how many of the selected events a dry run shows.
const drySample = 10

// replayParams are the parameters of POST /v1/replay, in its query string
// or as the members of its JSON body.
var replayParams = []string{"after", "type", "correlation_id", "subject", "since", "until", "from_position", "to_position", "queue", "rate", "dry_run", "all", "stored"}

// replayRequest is a parsed POST /v1/replay: the filter parameters of GET
// /v1/events but limit, and queue (default: the exchange), rate (events per
// second), dry_run and all.
type replayRequest struct {
	opts   ReplayRequest
	dryRun bool
	// stored sends the events in the version they were stored in, not
	// upcast to the latest.
	stored bool
}

// readReplay reads the parameters of POST /v1/replay from the query string
// or from a JSON body with the same names: one or the other, never both,
// so that no parameter is silently ignored. A problem has status 400 (or
// 413 and 415 for the body).
func (a *api) readReplay(r *http.Request) (replayRequest, *Problem) {
	body, p := a.readBody(r)
	if p != nil {
		return replayRequest{}, p
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return parseReplay(r.URL.RawQuery)
	}
	if r.URL.RawQuery != "" {
		return replayRequest{}, newProblem(http.StatusBadRequest, ProblemMalformedRequest,
			"the replay's parameters are given both in the query string and in a JSON body; give them in one of the two")
	}
	if p := checkJSONBody(r); p != nil {
		return replayRequest{}, p
	}
	values, p := replayBodyValues(body)
	if p != nil {
		return replayRequest{}, p
	}
	return parseReplay(values.Encode())
}

// replayBodyValues turns the JSON body of POST /v1/replay into the query
// parameters it stands for, so that both forms are checked by the same
// code. The body is an object whose members are the query's parameters:
// strings, type a string or an array of them, from_position and
// to_position integers, rate a number, dry_run and all booleans.
func replayBodyValues(body []byte) (url.Values, *Problem) {
	malformed := func(format string, args ...any) (url.Values, *Problem) {
		return nil, newProblem(http.StatusBadRequest, ProblemMalformedRequest, fmt.Sprintf(format, args...))
	}
	wrongType := func(name, want string) (url.Values, *Problem) {
		return nil, newProblem(http.StatusBadRequest, ProblemInvalidParameter, fmt.Sprintf("%s must be %s", name, want)).atField(name)
	}
	if !utf8.Valid(body) {
		return malformed("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return malformed(`the body must be a JSON object of the replay's parameters, such as {"type": "quiz.submitted", "queue": "badges"}`)
	}
	values := url.Values{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformed("the body is not valid JSON: %v", err)
		}
		name, ok := tok.(string) // inside an object, the token before a value is its key
		if !ok {
			return malformed("the body is not valid JSON: a member's name is not a string")
		}
		if !slices.Contains(replayParams, name) {
			return nil, newProblem(http.StatusBadRequest, ProblemInvalidParameter,
				fmt.Sprintf("unknown field %s; a replay takes %s", clip(name), strings.Join(replayParams, ", "))).atField(name)
		}
		if values.Has(name) {
			return nil, newProblem(http.StatusBadRequest, ProblemInvalidParameter, fmt.Sprintf("%s is given twice; give it once", name)).atField(name)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return malformed("the body is not valid JSON: %v", err)
		}
		switch name {
		case "type":
			switch v := v.(type) {
			case string:
				values.Add(name, v)
			case []any:
				for _, t := range v {
					ts, ok := t.(string)
					if !ok {
						return wrongType(name, "a type name or an array of them")
					}
					values.Add(name, ts)
				}
				if len(v) == 0 {
					values[name] = []string{}
				}
			default:
				return wrongType(name, "a type name or an array of them")
			}
		case "from_position", "to_position":
			n, ok := v.(json.Number)
			if _, err := strconv.ParseInt(string(n), 10, 64); !ok || err != nil {
				return wrongType(name, "a global position: a whole number from 0 (0: no bound)")
			}
			values.Set(name, string(n))
		case "rate":
			n, ok := v.(json.Number)
			if !ok {
				return wrongType(name, "a number of events per second above 0")
			}
			values.Set(name, string(n))
		case "dry_run", "all", "stored":
			b, ok := v.(bool)
			if !ok {
				return wrongType(name, "true or false")
			}
			values.Set(name, strconv.FormatBool(b))
		default:
			str, ok := v.(string)
			if !ok {
				return wrongType(name, "a string")
			}
			values.Set(name, str)
		}
	}
	if _, err := dec.Token(); err != nil {
		return malformed("the body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("the body holds more than one JSON value; send one object")
	}
	return values, nil
}

// parseReplay parses the parameters of POST /v1/replay, given as a query
// string. A problem has status 400.
func parseReplay(rawQuery string) (replayRequest, *Problem) {
	var req replayRequest
	q, p := parseQuery(rawQuery, replayParams, []string{"type"})
	if p != nil {
		return req, p
	}
	if req.opts.Filter, req.stored, p = readFrom(q); p != nil {
		return req, p
	}
	req.opts.Filter.Limit = 0 // the replay's batch size: its own default
	if v := q.get("queue"); v != "" {
		if req.opts.Queue, p = parseName(v, "queue"); p != nil {
			return req, p
		}
	}
	if v := q.get("rate"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0 && r <= 1e9) {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("rate %s must be a number of events per second above 0", clip(v))).atField("rate")
		}
		req.opts.Rate = r
	}
	if v := q.get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("dry_run %s must be true or false", clip(v))).atField("dry_run")
		}
		req.dryRun = b
	}
	all := false
	if v := q.get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return req, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("all %s must be true or false", clip(v))).atField("all")
		}
		all = b
	}
	if !all && !req.opts.Filter.Selective() {
		return req, newProblem(400, ProblemInvalidParameter,
			"the replay names no filter, so it would send every stored event again; name one (type, subject, correlation_id, since, until, from_position, to_position, after), or say all=true to replay the whole store").atField("all")
	}
	return req, nil
}

// parseName checks a queue or group name as AMQP bounds queue names: 1 to
// 255 bytes of printable UTF-8.
func parseName(name, param string) (string, *Problem) {
	ok := name != "" && len(name) <= 255 && utf8.ValidString(name)
	for _, c := range name {
		ok = ok && unicode.IsPrint(c)
	}
	if !ok {
		return "", newProblem(400, ProblemInvalidParameter, fmt.Sprintf("%s %s must be 1 to 255 bytes of printable text", param, clip(name))).atField(param)
	}
	return name, nil
}

// replay runs a replay, or plans one (dry_run=true): the number of events
// it would send and the first of them. A replay runs while the request
// does; a large one is better run with `eventbus replay`, which shows its
// progress. When it stops early, the problem's resume member is the cursor
// to pass as after to go on.
//
// The server's WriteTimeout does not bound a replay: past it, the replay
// would go on while the client saw a broken connection and might send it
// again. The client's patience, and its going away, bound it instead.
func (a *api) replay(w http.ResponseWriter, r *http.Request) {
	req, p := a.readReplay(r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
		// Not every server sets deadlines on its connections (HTTP/2 in
		// some setups, tests): the replay runs all the same.
		a.log.DebugContext(r.Context(), "httpapi: cannot lift the write deadline for a replay", "err", err)
	}
	if req.dryRun {
		var total int64
		var sample []event.Envelope
		err := withinTimeout(readContext(r.Context(), req.stored), a.requestTimeout, func(ctx context.Context) (err error) {
			if total, err = a.reader.Count(ctx, req.opts.Filter); err != nil || total == 0 {
				return err
			}
			f := req.opts.Filter
			f.Limit = drySample
			page, err := a.reader.Read(ctx, f)
			sample = page.Events
			return err
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		buf, err := appendEventList(nil, sample)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		buf = append(buf, `,"total":`...)
		buf = strconv.AppendInt(buf, total, 10)
		writeJSON(w, http.StatusOK, append(buf, `,"dry_run":true}`...))
		return
	}
	if a.admin.Replay == nil {
		writeProblem(w, r, notConfigured("replay"))
		return
	}
	if req.opts.Queue == "" {
		if a.admin.Exchange == "" {
			writeProblem(w, r, notConfigured("replay to the exchange (name a queue)"))
			return
		}
		req.opts.Exchange = a.admin.Exchange
	}
	res, err := a.replayBounded(readContext(r.Context(), req.stored), req.opts)
	if err != nil {
		if res.Published > 0 && r.Context().Err() == nil {
			infoFrom(r.Context()).err = err
			p := newProblem(http.StatusServiceUnavailable, ProblemUnavailable,
				fmt.Sprintf("the replay stopped after %d of %d events; retry with after=%s to go on", res.Published, res.Total, res.Resume))
			p.Resume, p.retryAfter = res.Resume, a.retryAfter
			writeProblem(w, r, p)
			return
		}
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
	group, p := parseName(r.PathValue("group"), "group")
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
	letters, err := a.admin.DeadLetters(r.Context(), group, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	buf, err := appendDeadLetters([]byte(`{"dead_letters":[`), letters)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, append(buf, "]}"...))
}

// appendDeadLetters appends the dead letters as JSON objects: their
// metadata, then "event" (the CloudEvent, data byte for byte) when the
// message carries one, else "body" (when it is JSON) or "body_base64".
// encoding/json would compact the event's data and the body.
func appendDeadLetters(dst []byte, letters []wire.DeadLetter) ([]byte, error) {
	for i, dl := range letters {
		if i > 0 {
			dst = append(dst, ',')
		}
		meta := dl
		meta.Event, meta.Body, meta.BodyBase64 = nil, nil, nil
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("encode dead letter: %w", err)
		}
		dst = append(dst, b[:len(b)-1]...) // without its closing brace
		switch {
		case dl.Event != nil:
			dst = append(dst, `,"event":`...)
			if dst, err = dl.Event.AppendCloudEvent(dst); err != nil {
				return nil, err
			}
		case dl.Body != nil:
			dst = append(dst, `,"body":`...)
			dst = append(dst, dl.Body...)
		default:
			dst = append(dst, `,"body_base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, dl.BodyBase64)
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
	}
	return dst, nil
}

// requeueDeadLetters moves a group's dead letters back to its queue: those
// whose event or message IDs the body {"ids": [...]} lists, or every one
// when the body is empty.
func (a *api) requeueDeadLetters(w http.ResponseWriter, r *http.Request) {
	if a.admin.Requeue == nil {
		writeProblem(w, r, notConfigured("requeueing dead letters"))
		return
	}
	group, p := parseName(r.PathValue("group"), "group")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	body, p := a.readBody(r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	var ids []string
	if len(body) > 0 {
		if p := checkJSONBody(r); p != nil {
			writeProblem(w, r, p)
			return
		}
		var req wire.RequeueRequest
		if err := json.Unmarshal(body, &req); err != nil || len(req.IDs) == 0 {
			writeProblem(w, r, newProblem(400, ProblemMalformedRequest,
				`the body must be {"ids": ["<event or message id>", ...]}, or empty to requeue every dead letter`).atField("ids"))
			return
		}
		ids = req.IDs
	}
	n, err := a.admin.Requeue(r.Context(), group, ids)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"requeued":`+strconv.Itoa(n)+`}`))
}
