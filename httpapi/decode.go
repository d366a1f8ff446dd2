package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// wireEvent is the JSON shape of one event in a POST /v1/events body. A body
// is one wireEvent, or one whose Events holds the batch.
type wireEvent struct {
	ID              string            `json:"id"`
	Type            string            `json:"type"`
	Data            json.RawMessage   `json:"data"`
	Subject         string            `json:"subject"`
	ExpectedVersion *int64            `json:"expected_version"`
	CorrelationID   string            `json:"correlation_id"`
	CausationID     string            `json:"causation_id"`
	Source          string            `json:"source"`
	DataSchema      string            `json:"dataschema"`
	Personal        json.RawMessage   `json:"personal"`
	Events          []json.RawMessage `json:"events"`
}

const eventFields = "type, data, id, subject, expected_version, correlation_id, causation_id, source, dataschema and personal"

// decodeEvents parses a POST /v1/events body into drafts. batch reports
// whether the body was {"events": [...]}. A problem has status 400: the
// envelope is wrong. Whether the data fits its type is the
// bus's check (422), made later.
//
// Data keeps the exact bytes the client sent. The input is untrusted: this
// never panics, whatever it is given.
func decodeEvents(body []byte) (drafts []event.Draft, batch bool, p *Problem) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, false, newProblem(400, ProblemMalformedRequest,
			`the body is empty; send an event {"type": ..., "data": ...} or a batch {"events": [...]}`)
	}
	if !utf8.Valid(body) {
		return nil, false, newProblem(400, ProblemMalformedRequest, "the body is not valid UTF-8")
	}
	var w wireEvent
	if p := decodeObject(body, &w, -1); p != nil {
		return nil, false, p
	}
	// encoding/json keeps the last of two equal keys, and turns a lone
	// surrogate escape into U+FFFD: the input limits refuse both, in the
	// envelope and in the data. Data sits one level down in an event, three
	// in a batch ({"events": [{"data": ...}]}).
	depth := event.MaxDataDepth + 1
	if w.Events != nil {
		depth = event.MaxDataDepth + 3
	}
	if err := event.CheckJSON(body, depth); err != nil {
		return nil, w.Events != nil, strictProblem(err, w.Events != nil)
	}
	if w.Events == nil {
		d, p := w.draft(-1)
		if p != nil {
			return nil, false, p
		}
		return []event.Draft{d}, false, nil
	}
	if w.ID != "" || w.Type != "" || w.Data != nil || w.Subject != "" || w.ExpectedVersion != nil ||
		w.CorrelationID != "" || w.CausationID != "" || w.Source != "" || w.DataSchema != "" || w.Personal != nil {
		return nil, true, newProblem(400, ProblemMalformedRequest,
			`a batch body holds only "events"; put every event's fields inside the array`).atField("events")
	}
	switch n := len(w.Events); {
	case n == 0:
		return nil, true, newProblem(400, ProblemMalformedRequest, `"events" is empty; send at least one event`).atField("events")
	case n > store.MaxBatch:
		return nil, true, newProblem(400, ProblemMalformedRequest,
			fmt.Sprintf(`"events" holds %d events; send at most %d in one batch`, n, store.MaxBatch)).atField("events")
	}
	drafts = make([]event.Draft, len(w.Events))
	seen := make(map[uuid.UUID]int, len(w.Events))
	for i, raw := range w.Events {
		var we wireEvent
		if p := decodeObject(raw, &we, i); p != nil {
			return nil, true, p
		}
		if we.Events != nil {
			return nil, true, inEvent(newProblem(400, ProblemMalformedRequest, "batches do not nest").atField("events"), i)
		}
		d, p := we.draft(i)
		if p != nil {
			return nil, true, p
		}
		if d.ID != uuid.Nil {
			if j, dup := seen[d.ID]; dup {
				return nil, true, inEvent(newProblem(400, ProblemInvalidEvent,
					fmt.Sprintf("id %s is also the id of events[%d]; every event needs its own id", d.ID, j)).atField("id"), i)
			}
			seen[d.ID] = i
		}
		drafts[i] = d
	}
	return drafts, true, nil
}

// decodeObject decodes one JSON object into w, rejecting unknown fields and
// trailing data. index is the event's place in a batch, or -1.
func decodeObject(raw []byte, w *wireEvent, index int) *Problem {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		return inEvent(jsonProblem(err), index)
	}
	if _, err := dec.Token(); err != io.EOF {
		return inEvent(newProblem(400, ProblemMalformedRequest, "the body holds more than one JSON value; send one object"), index)
	}
	return nil
}

// inEvent marks p as being about the event at index in a batch; index -1
// is the single event of a body, which needs no mark.
func inEvent(p *Problem, index int) *Problem {
	if index >= 0 {
		p.Detail = fmt.Sprintf("events[%d]: %s", index, p.Detail)
		p.atEvent(index)
	}
	return p
}

// jsonProblem explains a decoding error of encoding/json in the API's terms.
func jsonProblem(err error) *Problem {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return newProblem(400, ProblemMalformedRequest, fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", syntax, syntax.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return newProblem(400, ProblemMalformedRequest, "the body ends before its JSON is complete")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return newProblem(400, ProblemMalformedRequest,
				fmt.Sprintf(`an event must be a JSON object {"type": ..., "data": ...}, and a batch {"events": [...]}; not %s`, typ.Value))
		}
		want := "a string"
		switch typ.Field {
		case "expected_version":
			want = "an integer from 0 to 9223372036854775807"
		case "events":
			want = "an array of events"
		}
		return newProblem(400, ProblemInvalidEvent, fmt.Sprintf("%s must be %s, not %s", typ.Field, want, typ.Value)).atField(typ.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		detail := fmt.Sprintf("unknown field %s; an event has only %s", clip(field), eventFields)
		if field == "specversion" {
			detail += "; a CloudEvent is sent with Content-Type: " + event.ContentType + " (structured mode), " +
				ContentTypeCloudEventBatch + " (a batch), or with ce- headers (binary mode)"
		}
		return newProblem(400, ProblemInvalidEvent, detail).atField(field)
	}
	return newProblem(400, ProblemMalformedRequest, fmt.Sprintf("the body is not valid JSON: %v", err))
}

// strictProblem is the problem for a body that breaks the strict JSON
// rules: it names the event (in a batch) and the field, such as
// "data.answers[2]".
func strictProblem(err error, batch bool) *Problem {
	var fe *event.FieldError
	if !errors.As(err, &fe) {
		return newProblem(400, ProblemMalformedRequest, "the body is not valid JSON: "+err.Error())
	}
	if errors.Is(err, event.ErrNotJSON) {
		return newProblem(400, ProblemMalformedRequest, "the body "+fe.Reason)
	}
	field, index := fe.Field, -1
	// A batch is {"events": [...]}, or a bare array of CloudEvents.
	rest, ok := strings.CutPrefix(field, "events[")
	if !ok {
		rest, ok = strings.CutPrefix(field, "[")
	}
	if batch && ok {
		if n, after, ok := strings.Cut(rest, "]"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				field, index = strings.TrimPrefix(after, "."), i
			}
		}
	}
	if errors.Is(err, event.ErrTooDeep) {
		// Name the event's field, not a path hundreds of levels long.
		if i := strings.IndexAny(field, ".["); i > 0 {
			field = field[:i]
		}
	}
	return inEvent(fieldProblem(field, fe.Reason), index)
}

// fieldProblem is the 400 for an event whose field breaks an input limit.
func fieldProblem(field, reason string) *Problem {
	subject := field
	if subject == "" {
		subject = "the body"
	}
	return newProblem(400, ProblemInvalidEvent, subject+" "+reason).atField(field)
}

// draft checks the envelope fields and returns the draft. The bus fills
// what is left out. index is the event's place in a batch, or -1. The input
// limits are the event package's: the library checks the same.
func (w *wireEvent) draft(index int) (event.Draft, *Problem) {
	fail := func(field, format string, args ...any) (event.Draft, *Problem) {
		return event.Draft{}, inEvent(newProblem(400, ProblemInvalidEvent, fmt.Sprintf(format, args...)).atField(field), index)
	}
	failLimit := func(err error) (event.Draft, *Problem) {
		return event.Draft{}, inEvent(limitProblem(err), index)
	}
	d := event.Draft{Type: w.Type, Subject: w.Subject, Source: w.Source, Data: w.Data, ExpectedVersion: w.ExpectedVersion,
		DataSchema: w.DataSchema}
	if err := event.CheckTypeName(w.Type); err != nil {
		return failLimit(err)
	}
	if len(w.Data) == 0 || string(w.Data) == "null" {
		return fail("data", "data is required: the event's payload, as JSON")
	}
	if w.Source != "" {
		if err := event.CheckSource(w.Source); err != nil {
			return failLimit(err)
		}
	}
	if err := event.CheckSubject(w.Subject); err != nil {
		return failLimit(err)
	}
	if err := event.CheckDataSchema(w.DataSchema); err != nil {
		return failLimit(err)
	}
	for _, f := range []struct{ name, value string }{{"correlation_id", w.CorrelationID}, {"causation_id", w.CausationID}} {
		if err := event.CheckShortText(f.name, f.value); err != nil {
			return failLimit(err)
		}
	}
	var p *Problem
	parseID := func(field, s string) uuid.UUID {
		if s == "" || p != nil {
			return uuid.Nil
		}
		id, err := uuid.Parse(s)
		switch {
		case err != nil:
			_, p = fail(field, "%s %s is not a UUID (expected the form 0190d1e2-7c4a-7b3e-8f00-1234567890ab)", field, clip(s))
		case id == uuid.Nil:
			_, p = fail(field, "%s must not be the nil UUID; leave it out instead", field)
		}
		return id
	}
	d.ID = parseID("id", w.ID)
	d.CorrelationID = parseID("correlation_id", w.CorrelationID)
	d.CausationID = parseID("causation_id", w.CausationID)
	if p != nil {
		return event.Draft{}, p
	}
	if w.Personal != nil && string(w.Personal) != "null" {
		personal, p := decodePersonal(w.Personal, w.Data)
		if p != nil {
			return event.Draft{}, inEvent(p, index)
		}
		d.Personal = personal
	}
	switch {
	case w.ExpectedVersion != nil && w.Subject == "":
		return fail("expected_version", "expected_version needs a subject: it is the version that stream must be at")
	case w.ExpectedVersion != nil && *w.ExpectedVersion < 0:
		return fail("expected_version", "expected_version must be 0 (the stream must not exist yet) or more")
	}
	return d, nil
}

// clip quotes s for an error message, cut short if it is long: details echo
// what the client sent, never a megabyte of it.
func clip(s string) string { return event.Quote(s) }

// decodePersonal reads the "personal" member of an event: {"data_subject":
// "<id>", "fields": ["<name>", ...]}, each field a top-level field of data.
// A problem is a 422 naming the member at fault.
func decodePersonal(raw, data json.RawMessage) (*event.PersonalData, *Problem) {
	bad := func(field, reason string) (*event.PersonalData, *Problem) {
		return nil, newProblem(http.StatusUnprocessableEntity, ProblemInvalidData, field+" "+reason).atField(field)
	}
	var w struct {
		DataSubject json.RawMessage `json:"data_subject"`
		Fields      json.RawMessage `json:"fields"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return bad("personal", "has an unknown member "+clip(field)+`; it holds only "data_subject" and "fields"`)
		}
		return bad("personal", `must be an object {"data_subject": "<id>", "fields": ["<name>", ...]}`)
	}
	var p event.PersonalData
	if len(w.DataSubject) == 0 || string(w.DataSubject) == "null" {
		return bad("personal.data_subject", "is required: the id of the person the fields are about")
	}
	if err := json.Unmarshal(w.DataSubject, &p.DataSubject); err != nil {
		return bad("personal.data_subject", "must be a string, not "+clip(string(w.DataSubject)))
	}
	if len(w.Fields) == 0 || string(w.Fields) == "null" {
		return bad("personal.fields", "is required: the names of the top-level fields of data that are personal")
	}
	if err := json.Unmarshal(w.Fields, &p.Fields); err != nil {
		return bad("personal.fields", "must be an array of field names (strings)")
	}
	if err := event.CheckPersonalData(p, data, 0); err != nil {
		var pe *event.PersonalError
		if errors.As(err, &pe) {
			return bad(pe.Field, pe.Reason)
		}
		return bad("personal", err.Error())
	}
	return &p, nil
}
