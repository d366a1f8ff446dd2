package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
)

// postEvents stores one event or a batch.
func (a *api) postEvents(w http.ResponseWriter, r *http.Request) {
	mode, p := publishModeOf(r.Header)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	body, p := a.readBody(r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	drafts, batch, p := decodePublish(mode, r.Header, body)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	res, err := a.bus.Append(withTraceContext(r), drafts)
	if err != nil {
		// The bus says what is wrong, but not in the API's terms; find the
		// event at fault again, on this path only, to name it.
		var verr *event.ValidationError
		var perr *event.PersonalError
		var ferr *event.FieldError
		var p *Problem
		switch reg := a.bus.Registry(); {
		case errors.As(err, &perr):
			p = inEvent(newProblem(http.StatusUnprocessableEntity, ProblemInvalidData, perr.Field+" "+perr.Reason).atField(perr.Field),
				batchIndex(perr.Index, batch))
		case errors.Is(err, event.ErrUnknownType):
			p = unknownType(reg, drafts, batch)
		case errors.As(err, &verr) || errors.As(err, &ferr) && ferr.Field == "dataschema":
			p = checkData(reg, drafts, batch)
		}
		if p == nil {
			a.fail(w, r, err)
			return
		}
		writeProblem(w, r, p)
		return
	}
	a.hub.wake()
	status := http.StatusOK
	reg := a.bus.Registry()
	for _, ap := range res {
		if !ap.Duplicate {
			status = http.StatusCreated
			a.metrics.events.WithLabelValues("stored").Inc()
			origin := reg.Origin(ap.Envelope.Type)
			if origin == "" {
				origin = "unknown"
			}
			a.metrics.byOrigin.WithLabelValues(origin).Inc()
		} else {
			a.metrics.events.WithLabelValues("duplicate").Inc()
		}
	}
	if !batch {
		env := res[0].Envelope
		w.Header().Set("Location", "/v1/events/"+env.ID.String())
		a.writeEvent(w, r, status, env)
		return
	}
	envs := make([]event.Envelope, len(res))
	for i, ap := range res {
		envs[i] = ap.Envelope
	}
	buf, err := appendEventList(make([]byte, 0, 512*len(envs)), envs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, append(buf, '}'))
}

// checkData finds the first event of a known type whose data does not fit
// the version it names (its dataschema, or the latest), and returns the
// problem naming the event and the field. Events of types the registry
// does not know are the bus's to accept (a gateway does) or refuse.
func checkData(reg *event.Registry, drafts []event.Draft, batch bool) *Problem {
	for i, d := range drafts {
		if !reg.Known(d.Type) {
			continue
		}
		if _, err := reg.CheckAs(d.Type, d.DataSchema, d.Data); err != nil {
			return inEvent(dataProblem(err), batchIndex(i, batch))
		}
	}
	return nil
}

// dataProblem is the 422 for data that does not fit its type: it names the
// field, and lists each schema violation with its JSON path and rule. A
// dataschema that names no version of the type is a 422 too: the data
// cannot be checked against anything.
func dataProblem(err error) *Problem {
	var ferr *event.FieldError
	if errors.As(err, &ferr) {
		return newProblem(http.StatusUnprocessableEntity, ProblemInvalidData, ferr.Field+" "+ferr.Reason).atField(ferr.Field)
	}
	p := newProblem(http.StatusUnprocessableEntity, ProblemInvalidData, busDetail(err)).atField("data")
	var verr *event.ValidationError
	if errors.As(err, &verr) {
		if verr.Field != "" {
			p.atField("data." + verr.Field)
		}
		p.Errors = verr.Violations
	}
	return p
}

// unknownType is the problem for the bus refusing a type it does not know:
// the first draft of such a type, as the bus checks them in order.
func unknownType(reg *event.Registry, drafts []event.Draft, batch bool) *Problem {
	i := 0
	for i < len(drafts)-1 && reg.Known(drafts[i].Type) {
		i++
	}
	p := newProblem(http.StatusUnprocessableEntity, ProblemUnknownType,
		fmt.Sprintf("type %s is not registered on this server; the known types are %s", clip(drafts[i].Type), strings.Join(reg.Types(), ", ")))
	return inEvent(p.atField("type"), batchIndex(i, batch))
}

func batchIndex(i int, batch bool) int {
	if batch {
		return i
	}
	return -1
}

// checkJSONBody answers 415 unless the request says its body is JSON in
// UTF-8.
func checkJSONBody(r *http.Request) *Problem {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	return jsonMediaProblem(ct, mt, params["charset"], err)
}

// jsonMediaProblem is checkJSONBody's answer for the parsed Content-Type
// ct: its media type, charset, and parse error.
func jsonMediaProblem(ct, mt, charset string, err error) *Problem {
	if err != nil || !event.IsJSONMediaType(mt) || (charset != "" && !strings.EqualFold(charset, "utf-8")) {
		got := "no Content-Type"
		if ct != "" {
			got = "Content-Type " + clip(ct)
		}
		return newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
			fmt.Sprintf("the body must be JSON in UTF-8, sent with Content-Type: application/json; the request has %s", got))
	}
	return nil
}

// readBody reads the request body, which MaxBytesReader limits.
func (a *api) readBody(r *http.Request) ([]byte, *Problem) {
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= a.maxBody {
		buf.Grow(int(n))
	}
	_, err := buf.ReadFrom(r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the body is over the limit of %d bytes; send fewer events per request", tooLarge.Limit))
	case err != nil:
		return nil, newProblem(http.StatusBadRequest, ProblemMalformedRequest, "the body could not be read to its end")
	}
	return buf.Bytes(), nil
}

var traceContext propagation.TraceContext

// withTraceContext returns the request's context with the trace context of
// its traceparent and tracestate headers, which the bus stores with the
// events. A span already in the context (from tracing middleware in front of
// this handler) wins: it is the request's own span, a child of the header's.
func withTraceContext(r *http.Request) context.Context {
	ctx := r.Context()
	if trace.SpanContextFromContext(ctx).IsValid() || r.Header.Get("Traceparent") == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
}

// listEvents answers a page of events in commit order.
func (a *api) listEvents(w http.ResponseWriter, r *http.Request) {
	q, p := parseQuery(r.URL.RawQuery, eventsParams, []string{"type"})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	f, stored, p := readFrom(q)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	page, err := a.reader.Read(readContext(r.Context(), stored), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	buf, err := appendEventList(make([]byte, 0, 512*len(page.Events)+64), page.Events)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	buf = append(buf, `,"next":"`...)
	buf = append(buf, page.Next.String()...) // base64url: nothing to escape
	writeJSON(w, http.StatusOK, append(buf, `"}`...))
}

// getEvent answers one event.
func (a *api) getEvent(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := uuid.Parse(raw)
	if err != nil {
		writeProblem(w, r, newProblem(http.StatusBadRequest, ProblemInvalidParameter,
			fmt.Sprintf("%s is not an event id: a UUID such as 0190d1e2-7c4a-7b3e-8f00-1234567890ab", clip(raw))).atField("id"))
		return
	}
	q, p := parseQuery(r.URL.RawQuery, []string{"stored"}, nil)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	stored, p := storedFrom(q)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	env, err := a.reader.Get(readContext(r.Context(), stored), id)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound, fmt.Sprintf("no event has the id %s", id)))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeEvent(w, r, http.StatusOK, env)
}

// getStream answers a stream's events in version order.
func (a *api) getStream(w http.ResponseWriter, r *http.Request) {
	subject, p := parseSubject(r.PathValue("subject"), "subject")
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	sq, p := parseStreamQuery(r.URL.RawQuery)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	events, err := a.reader.ReadStream(readContext(r.Context(), sq.Stored), subject, sq.From, sq.Limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next := sq.From
	if len(events) > 0 {
		next = events[len(events)-1].StreamVersion + 1
	}
	buf, err := appendEventList(make([]byte, 0, 512*len(events)+64), events)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	buf = append(buf, `,"next_version":`...)
	buf = strconv.AppendInt(buf, next, 10)
	writeJSON(w, http.StatusOK, append(buf, '}'))
}

// getSchemas answers every event type the server knows, with its origin,
// versions and their JSON Schemas.
func (a *api) getSchemas(w http.ResponseWriter, r *http.Request) {
	a.writeValue(w, r, http.StatusOK, wire.Schemas{Types: a.bus.Registry().Describe()})
}

// getStatus answers the relay's status.
func (a *api) getStatus(w http.ResponseWriter, r *http.Request) {
	if a.status == nil {
		writeProblem(w, r, notConfigured("the relay status"))
		return
	}
	st, err := a.status(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeValue(w, r, http.StatusOK, st)
}

// healthz is liveness: the process answers.
func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

// readyz runs the readiness checks at once, and answers within
// ReadyTimeout: a check that has not returned by then (a server that
// accepts connections and says nothing) counts as failing, and is left to
// end on its own. The route is open, so a failing check is named without
// its error, which is logged instead; a damaged store is the exception, as
// it needs an operator, not a retry.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.readyTimeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(a.ready))
	for i, c := range a.ready {
		go func() { results <- result{i, c.Check(ctx)} }()
	}
	errs := make([]error, len(a.ready))
	answered := make([]bool, len(a.ready))
collect:
	for range a.ready {
		select {
		case res := <-results:
			errs[res.i], answered[res.i] = res.err, true
		case <-ctx.Done():
			break collect
		}
	}
	checks := make(map[string]string, len(a.ready))
	var failing, damaged []string
	for i, c := range a.ready {
		checks[c.Name] = "ok"
		err := errs[i]
		if !answered[i] {
			err = fmt.Errorf("no answer within %s", a.readyTimeout)
		}
		if err == nil {
			continue
		}
		checks[c.Name] = "failing"
		failing = append(failing, c.Name)
		if errors.Is(err, store.ErrCorrupt) {
			checks[c.Name] = "damaged"
			damaged = append(damaged, c.Name)
		}
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
			slog.String("check", c.Name), slog.String("error", err.Error()), slog.String("request_id", infoFrom(r.Context()).id))
	}
	if len(failing) > 0 {
		detail := fmt.Sprintf("not ready: %s failing; the server's log says why", strings.Join(failing, " and "))
		if len(damaged) > 0 {
			detail = fmt.Sprintf("not ready: %s failing; %s", strings.Join(failing, " and "), damagedAdvice)
		}
		p := newProblem(http.StatusServiceUnavailable, ProblemNotReady, detail)
		p.Checks, p.retryAfter = checks, a.retryAfter
		writeProblem(w, r, p)
		return
	}
	a.writeValue(w, r, http.StatusOK, struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}{"ready", checks})
}

// damagedAdvice says what a damaged store needs.
const damagedAdvice = "the event store's file is damaged (corrupt pages, or not a database): retrying will not help. " +
	"Stop the service and restore the file from a backup, or check it with `sqlite3 FILE \"PRAGMA integrity_check\"` " +
	"and recover what it can with `sqlite3 FILE .recover`; the server's log names the file"

// fail answers a store or bus error as a problem. Errors of the server's
// side are logged with the request, and answered without their text.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	info := infoFrom(r.Context())
	var verr *event.ValidationError
	var ferr *event.FieldError
	var perr *event.PersonalError
	var p *Problem
	switch {
	case errors.As(err, &perr):
		p = newProblem(http.StatusUnprocessableEntity, ProblemInvalidData, perr.Field+" "+perr.Reason).atField(perr.Field)
	case errors.As(err, &ferr):
		// An input limit, found by the bus in what it filled in (the
		// server's default source, say): the decoder checked the rest.
		p = fieldProblem(ferr.Field, ferr.Reason)
	case errors.Is(err, store.ErrVersionConflict):
		p = newProblem(http.StatusConflict, ProblemVersionConflict,
			fromSentinel(err, store.ErrVersionConflict)+"; read the stream, then retry with its current version as expected_version")
	case errors.Is(err, store.ErrConcurrentAppend):
		p = newProblem(http.StatusConflict, ProblemConcurrentAppend,
			"another request stored an event with the same id at the same moment; retry: the retry answers the stored event")
	case errors.Is(err, event.ErrTooLarge):
		p = newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge, busDetail(err)+"; make the event's data smaller")
	case errors.Is(err, event.ErrUnknownType):
		p = newProblem(http.StatusUnprocessableEntity, ProblemUnknownType, busDetail(err)+"; use a registered type").atField("type")
	case errors.As(err, &verr):
		p = dataProblem(err)
	case errors.Is(err, event.ErrInvalid):
		p = newProblem(http.StatusBadRequest, ProblemInvalidEvent, busDetail(err))
	case errors.Is(err, replay.ErrBadTarget):
		p = newProblem(http.StatusBadRequest, ProblemInvalidParameter, fromSentinel(err, replay.ErrBadTarget)).atField("queue")
	case errors.Is(err, store.ErrBadCursor):
		p = newProblem(http.StatusBadRequest, ProblemInvalidParameter, "the cursor is not one this server issued").atField("after")
	case errors.Is(err, store.ErrCorrupt):
		// Not a 503: a client that retries gets the same answer for ever.
		info.err = err
		p = newProblem(http.StatusInternalServerError, ProblemStoreDamaged, damagedAdvice)
	case errors.Is(err, errRequestTimeout):
		info.err = err
		p = a.timeoutProblem(r)
	case r.Context().Err() != nil:
		// The client went away: nobody reads an answer.
		info.err, info.clientGone = err, true
		return
	case errors.Is(err, broker.ErrNotFound):
		// The broker's text names hosts, virtual hosts and internals: it
		// goes to the log, with the request ID, not to the client.
		info.err = err
		p = newProblem(http.StatusNotFound, ProblemNotFound,
			"the broker has no such queue; check the name (a consumer group's queues exist once its consumer has started)")
	case errors.Is(err, store.ErrTxConflict):
		// Transient: the database broke a deadlock or a serialization
		// conflict by cancelling this transaction (the bus had retried it
		// already). It rolled back whole.
		info.err = err
		p = newProblem(http.StatusServiceUnavailable, ProblemUnavailable,
			"the event store cancelled the transaction to resolve a conflict with concurrent ones, and nothing of it was stored; "+
				"retry after the Retry-After delay")
		p.retryAfter = a.retryAfter
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		info.err = err
		// Not "nothing was stored": a connection that fails after the
		// commit leaves the events stored and the answer lost.
		detail := "the event store cannot be reached at the moment; retry after the Retry-After delay"
		if r.Method == http.MethodPost && r.URL.Path == "/v1/events" {
			detail += ". The events may have been stored before the connection failed: send them again with the same ids, " +
				"which stores nothing twice and answers 200 with the stored events"
		}
		p = newProblem(http.StatusServiceUnavailable, ProblemUnavailable, detail)
		p.retryAfter = a.retryAfter
	case errors.Is(err, broker.ErrUnavailable):
		info.err = err
		p = newProblem(http.StatusServiceUnavailable, ProblemUnavailable,
			"the broker cannot be reached at the moment; retry after the Retry-After delay")
		p.retryAfter = a.retryAfter
	default:
		info.err = err
		p = newProblem(http.StatusInternalServerError, ProblemInternal,
			"the server failed; the request ID identifies the error in the server's log")
	}
	writeProblem(w, r, p)
}

// busDetail is the bus's error message without the bus's own prefix.
func busDetail(err error) string {
	return strings.TrimPrefix(err.Error(), "eventbus: dispatch: ")
}

// fromSentinel returns err's message from sentinel's text on, dropping the
// layers of context (the bus, the store) that mean nothing to a client.
func fromSentinel(err, sentinel error) string {
	msg := err.Error()
	if i := strings.Index(msg, sentinel.Error()); i >= 0 {
		return msg[i:]
	}
	return msg
}

func notConfigured(what string) *Problem {
	return newProblem(http.StatusNotImplemented, ProblemNotImplemented, what+" is not enabled on this server")
}

// writeEvent answers one event as a structured CloudEvent, its data byte for
// byte.
func (a *api) writeEvent(w http.ResponseWriter, r *http.Request, status int, env event.Envelope) {
	buf, err := env.AppendCloudEvent(make([]byte, 0, 512+len(env.Data)))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", event.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(status)
	_, _ = w.Write(buf)
}

// appendEventList appends `{"events":[...]` (without the closing brace) to
// dst: the envelopes as CloudEvents, data byte for byte. Encoding them
// through encoding/json would compact and escape the data.
func appendEventList(dst []byte, envs []event.Envelope) ([]byte, error) {
	dst = append(dst, `{"events":[`...)
	for i, env := range envs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = env.AppendCloudEvent(dst); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// writeValue answers v as JSON. Use it for values without event data.
func (a *api) writeValue(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		a.fail(w, r, fmt.Errorf("encode answer: %w", err))
		return
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
