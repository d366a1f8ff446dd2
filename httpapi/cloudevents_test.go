package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
)

const (
	structuredType = "application/cloudevents+json"
	batchType      = "application/cloudevents-batch+json"
)

// publishHeaders posts body with the publish token, contentType and
// header (whose values are sent as given, repeated ones included). It
// returns once what it stored is visible to readers.
func (h *harness) publishHeaders(contentType string, header http.Header, body string) response {
	h.t.Helper()
	r, err := http.NewRequest("POST", h.srv.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range header {
		r.Header[k] = vs
	}
	r.Header.Set("Authorization", "Bearer "+publishSecret)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	res, err := h.srv.Client().Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if res.StatusCode < 300 {
		testenv.Settle(h.t, h.store)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// ceHeaders is a binary-mode header set: pairs of attribute and value.
func ceHeaders(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add("ce-"+pairs[i], pairs[i+1])
	}
	return h
}

// structuredEvent is a structured-mode CloudEvent with the required
// attributes, then extra (a JSON fragment ending in a comma, or "").
func structuredEvent(id uuid.UUID, extra, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/quiz-service","type":"quiz.submitted",%s"data":%s}`, id, extra, data)
}

func TestPublishStructuredCloudEventAnswers201(t *testing.T) {
	h := newHarness(t, harnessOption{})
	id, corr, cause := uuid.New(), uuid.New(), uuid.New()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	data := quizData(42)
	body := fmt.Sprintf(`{ "specversion" : "1.0", "id":%q, "source":"https://edupulse.example/quiz?x=1", "type":"quiz.submitted",
		"subject":"quiz-7", "time":"2026-03-04T05:06:07.123456789+02:00", "datacontenttype":"application/json; charset=utf-8",
		"correlationid":%q, "causationid":%q, "traceparent":%q, "tracestate":"congo=t61rcWkgMzE", "expectedversion":"0",
		"dataschema":null, "data_base64":null, "unsetextension":null, "data":%s }`, id, corr, cause, parent, data)
	res := h.publishHeaders(structuredType+"; charset=UTF-8", nil, body)
	if res.status != 201 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if res.header.Get("Content-Type") != structuredType || res.header.Get("Location") != "/v1/events/"+id.String() {
		t.Fatalf("Content-Type %q, Location %q", res.header.Get("Content-Type"), res.header.Get("Location"))
	}
	e := cloudEvent(t, res.body)
	ext := e.Extensions()
	switch {
	case e.ID() != id.String(), e.Source() != "https://edupulse.example/quiz?x=1", e.Type() != "quiz.submitted", e.Subject() != "quiz-7":
		t.Fatalf("event %v", e)
	case !e.Time().Equal(time.Date(2026, 3, 4, 3, 6, 7, 123456000, time.UTC)):
		t.Fatalf("time %v, want the instant sent, to the microsecond", e.Time())
	case e.DataContentType() != "application/json" || !bytes.Equal(e.Data(), []byte(data)):
		t.Fatalf("datacontenttype %q, data %s, want %s", e.DataContentType(), e.Data(), data)
	case ext["correlationid"] != corr.String() || ext["causationid"] != cause.String() || ext["traceparent"] != parent ||
		ext["tracestate"] != "congo=t61rcWkgMzE" || ext["streamversion"] != "1":
		t.Fatalf("extensions %v", ext)
	}
	if got := h.get("/v1/events/" + id.String()); got.status != 200 || !bytes.Equal(got.body, res.body) {
		t.Fatalf("GET: %d\n%s\nwant\n%s", got.status, got.body, res.body)
	}
	// The same id again: 200 with the original, nothing stored twice.
	again := h.publishHeaders(structuredType, nil, structuredEvent(id, "", quizData(1)))
	if again.status != 200 || !bytes.Equal(again.body, res.body) {
		t.Fatalf("retry: %d %s", again.status, again.body)
	}
	// JSON data sent as data_base64 (as the Go SDK sends []byte data) is
	// kept, and reads back as the same bytes in data.
	b64 := h.publishHeaders(structuredType, nil, fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/s","type":"quiz.submitted",`+
		`"datacontenttype":"application/json","data_base64":%q}`, uuid.New(), base64.StdEncoding.EncodeToString([]byte(data))))
	if b64.status != 201 || !bytes.Equal(cloudEvent(t, b64.body).Data(), []byte(data)) {
		t.Fatalf("data_base64: %d %s", b64.status, b64.body)
	}
	// expectedversion holds as expected_version does.
	conflict := h.publishHeaders(structuredType, nil, structuredEvent(uuid.New(), `"subject":"quiz-7","expectedversion":0,`, quizData(2)))
	conflict.problem(t, 409, httpapi.ProblemVersionConflict)
	if n := h.rows(); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

func TestPublishBinaryCloudEventAnswers201(t *testing.T) {
	h := newHarness(t, harnessOption{})
	id, corr := uuid.New(), uuid.New()
	data := quizData(9)
	header := ceHeaders("specversion", "1.0", "id", id.String(), "source", "/quiz-service", "type", "quiz.submitted",
		// The HTTP binding's example: percent-encoded UTF-8, lower-case hex accepted.
		"subject", "Euro%20%E2%82%AC%20%f0%9f%98%80",
		"time", "2026-03-04T05:06:07Z",
		// A double-quoted value, as older versions of the binding sent.
		"correlationid", `"`+corr.String()+`"`,
		"expectedversion", "0")
	header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") // the HTTP header, not the attribute
	res := h.publishHeaders("application/json", header, data)
	if res.status != 201 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	e := cloudEvent(t, res.body)
	if e.ID() != id.String() || e.Subject() != "Euro € 😀" || e.Source() != "/quiz-service" || !e.Time().Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) ||
		e.Extensions()["correlationid"] != corr.String() || !bytes.Equal(e.Data(), []byte(data)) {
		t.Fatalf("event %s", res.body)
	}
	// Without a traceparent attribute, the request's trace context is the event's.
	if e.Extensions()["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent %v", e.Extensions()["traceparent"])
	}
	if res.header.Get("Location") != "/v1/events/"+id.String() {
		t.Fatalf("Location %q", res.header.Get("Location"))
	}
}

func TestPublishCloudEventBatchAnswers201(t *testing.T) {
	h := newHarness(t, harnessOption{})
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	datas := []string{quizData(1), quizData(2)}
	body := `[` + structuredEvent(ids[0], `"subject":"quiz-b",`, datas[0]) + ",\n " +
		structuredEvent(ids[1], `"subject":"quiz-b","expectedversion":1,`, datas[1]) + `]`
	res := h.publishHeaders(batchType, nil, body)
	if res.status != 201 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	events, raws, _ := eventList(t, res.body)
	if len(events) != 2 {
		t.Fatalf("%d events answered", len(events))
	}
	for i, e := range events {
		if e.ID() != ids[i].String() || !bytes.Equal(e.Data(), []byte(datas[i])) || e.Extensions()["streamversion"] != fmt.Sprint(i+1) {
			t.Fatalf("event %d: %s", i, raws[i])
		}
	}
	if again := h.publishHeaders(batchType, nil, body); again.status != 200 {
		t.Fatalf("repeated batch: %d %s", again.status, again.body)
	}
	if n := h.rows(); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// TestPublishCloudEventBadInputAnswers400: every mode keeps the input
// limits, refuses what the bus cannot keep, and names the attribute (and
// the event in a batch); nothing is stored.
func TestPublishCloudEventBadInputAnswers400(t *testing.T) {
	h := newHarness(t, harnessOption{bus: eventbus.Config{AllowUnknownTypes: true}})
	id, id2 := uuid.New(), uuid.New()
	ok := quizData(1)
	structured := func(extra string) string { return structuredEvent(uuid.New(), extra, ok) }
	without := func(attr string) string {
		var parts []string
		for _, kv := range [][2]string{{"specversion", `"1.0"`}, {"id", `"` + uuid.NewString() + `"`}, {"source", `"/s"`}, {"type", `"quiz.submitted"`}} {
			if kv[0] != attr {
				parts = append(parts, `"`+kv[0]+`":`+kv[1])
			}
		}
		return "{" + strings.Join(parts, ",") + `,"data":` + ok + "}"
	}
	binary := func(pairs ...string) http.Header {
		base := map[string]string{"specversion": "1.0", "id": uuid.NewString(), "source": "/quiz-service", "type": "quiz.submitted"}
		h := http.Header{}
		for i := 0; i+1 < len(pairs); i += 2 {
			delete(base, pairs[i])
			if pairs[i+1] != "-" {
				h.Add("ce-"+pairs[i], pairs[i+1])
			}
		}
		for k, v := range base {
			h.Add("ce-"+k, v)
		}
		return h
	}
	for _, tc := range []struct {
		name, contentType string
		header            http.Header
		body              string
		typ, field        string
		event             int // the event at fault in a batch, or -1
	}{
		// Structured mode.
		{"wrong specversion", structuredType, nil, strings.Replace(structured(""), `"1.0"`, `"0.3"`, 1), httpapi.ProblemInvalidEvent, "specversion", -1},
		{"missing specversion", structuredType, nil, without("specversion"), httpapi.ProblemInvalidEvent, "specversion", -1},
		{"missing id", structuredType, nil, without("id"), httpapi.ProblemInvalidEvent, "id", -1},
		{"missing source", structuredType, nil, without("source"), httpapi.ProblemInvalidEvent, "source", -1},
		{"missing type", structuredType, nil, without("type"), httpapi.ProblemInvalidEvent, "type", -1},
		{"missing data", structuredType, nil, `{"specversion":"1.0","id":"` + id.String() + `","source":"/s","type":"a"}`, httpapi.ProblemInvalidEvent, "data", -1},
		{"null data", structuredType, nil, structuredEvent(id, "", "null"), httpapi.ProblemInvalidEvent, "data", -1},
		{"id not a UUID", structuredType, nil, strings.Replace(structured(""), `"id":"`, `"id":"A234-1234-`, 1), httpapi.ProblemInvalidEvent, "id", -1},
		{"id in upper case", structuredType, nil, strings.Replace(structuredEvent(id, "", ok), id.String(), strings.ToUpper(id.String()), 1), httpapi.ProblemInvalidEvent, "id", -1},
		{"nil id", structuredType, nil, structuredEvent(uuid.Nil, "", ok), httpapi.ProblemInvalidEvent, "id", -1},
		{"id not a string", structuredType, nil, strings.Replace(structured(""), `"id":"`, `"id":7,"x":"`, 1), httpapi.ProblemInvalidEvent, "id", -1},
		{"bad source", structuredType, nil, strings.Replace(structured(""), `"/quiz-service"`, `"quiz service"`, 1), httpapi.ProblemInvalidEvent, "source", -1},
		{"bad type", structuredType, nil, strings.Replace(structured(""), `"quiz.submitted"`, `"quiz submitted"`, 1), httpapi.ProblemInvalidEvent, "type", -1},
		{"subject too long", structuredType, nil, structured(`"subject":"` + strings.Repeat("s", 513) + `",`), httpapi.ProblemInvalidEvent, "subject", -1},
		{"empty subject", structuredType, nil, structured(`"subject":"",`), httpapi.ProblemInvalidEvent, "subject", -1},
		{"subject with a control character", structuredType, nil, structured(`"subject":"a\tb",`), httpapi.ProblemInvalidEvent, "subject", -1},
		{"bad time", structuredType, nil, structured(`"time":"yesterday",`), httpapi.ProblemInvalidEvent, "time", -1},
		{"time in year 0", structuredType, nil, structured(`"time":"0000-01-01T00:00:00Z",`), httpapi.ProblemInvalidEvent, "time", -1},
		{"data_base64 without datacontenttype", structuredType, nil, `{"specversion":"1.0","id":"` + id.String() + `","source":"/s","type":"a","data_base64":"e30="}`, httpapi.ProblemInvalidEvent, "data_base64", -1},
		{"data_base64 not JSON", structuredType, nil, `{"specversion":"1.0","id":"` + id.String() + `","source":"/s","type":"a","datacontenttype":"application/json","data_base64":"AAEC"}`, httpapi.ProblemInvalidEvent, "data_base64", -1},
		{"data_base64 not Base64", structuredType, nil, `{"specversion":"1.0","id":"` + id.String() + `","source":"/s","type":"a","datacontenttype":"application/json","data_base64":"e30"}`, httpapi.ProblemInvalidEvent, "data_base64", -1},
		{"data and data_base64", structuredType, nil, structured(`"datacontenttype":"application/json","data_base64":"e30=",`), httpapi.ProblemInvalidEvent, "data_base64", -1},
		{"XML datacontenttype", structuredType, nil, structured(`"datacontenttype":"application/xml",`), httpapi.ProblemInvalidEvent, "datacontenttype", -1},
		{"other JSON datacontenttype", structuredType, nil, structured(`"datacontenttype":"application/vnd.edupulse+json",`), httpapi.ProblemInvalidEvent, "datacontenttype", -1},
		{"dataschema not a URI", structuredType, nil, structured(`"dataschema":"quiz v1",`), httpapi.ProblemInvalidEvent, "dataschema", -1},
		{"dataschema without a scheme", structuredType, nil, structured(`"dataschema":"/schemas/quiz/1",`), httpapi.ProblemInvalidEvent, "dataschema", -1},
		{"unknown extension", structuredType, nil, structured(`"comexampleext":"v",`), httpapi.ProblemInvalidEvent, "comexampleext", -1},
		{"envelope field name", structuredType, nil, structured(`"correlation_id":"` + uuid.NewString() + `",`), httpapi.ProblemInvalidEvent, "correlation_id", -1},
		{"store-assigned position", structuredType, nil, structured(`"position":"12",`), httpapi.ProblemInvalidEvent, "position", -1},
		{"store-assigned streamversion", structuredType, nil, structured(`"subject":"s","streamversion":"1",`), httpapi.ProblemInvalidEvent, "streamversion", -1},
		{"bad correlationid", structuredType, nil, structured(`"correlationid":"x",`), httpapi.ProblemInvalidEvent, "correlationid", -1},
		{"bad causationid", structuredType, nil, structured(`"causationid":"` + strings.Repeat("c", 300) + `",`), httpapi.ProblemInvalidEvent, "causationid", -1},
		{"bad traceparent", structuredType, nil, structured(`"traceparent":"00-zz",`), httpapi.ProblemInvalidEvent, "traceparent", -1},
		{"tracestate without traceparent", structuredType, nil, structured(`"tracestate":"a=b",`), httpapi.ProblemInvalidEvent, "tracestate", -1},
		{"expectedversion without subject", structuredType, nil, structured(`"expectedversion":0,`), httpapi.ProblemInvalidEvent, "expectedversion", -1},
		{"negative expectedversion", structuredType, nil, structured(`"subject":"s","expectedversion":-1,`), httpapi.ProblemInvalidEvent, "expectedversion", -1},
		{"fractional expectedversion", structuredType, nil, structured(`"subject":"s","expectedversion":"1.5",`), httpapi.ProblemInvalidEvent, "expectedversion", -1},
		{"duplicate attribute", structuredType, nil, structured(`"type":"quiz.graded",`), httpapi.ProblemInvalidEvent, "type", -1},
		{"duplicate key in data", structuredType, nil, structuredEvent(id, "", `{"k":1,"k":2}`), httpapi.ProblemInvalidEvent, "data.k", -1},
		{"lone surrogate in data", structuredType, nil, structuredEvent(id, "", `["\ud800"]`), httpapi.ProblemInvalidEvent, "data[0]", -1},
		{"data too deep", structuredType, nil, structuredEvent(id, "", strings.Repeat("[", 513)+strings.Repeat("]", 513)), httpapi.ProblemInvalidEvent, "data", -1},
		{"not JSON", structuredType, nil, `{"specversion":"1.0",`, httpapi.ProblemMalformedRequest, "", -1},
		{"empty body", structuredType, nil, ` `, httpapi.ProblemMalformedRequest, "", -1},
		{"an array", structuredType, nil, `[` + structured("") + `]`, httpapi.ProblemMalformedRequest, "", -1},
		{"two values", structuredType, nil, structured("") + ` {}`, httpapi.ProblemMalformedRequest, "", -1},
		// Batched mode.
		{"batch not an array", batchType, nil, structured(""), httpapi.ProblemMalformedRequest, "", -1},
		{"empty batch", batchType, nil, `[]`, httpapi.ProblemMalformedRequest, "", -1},
		{"mixed batch: an envelope in it", batchType, nil, `[` + structured("") + `,{"type":"quiz.submitted","data":` + ok + `}]`, httpapi.ProblemInvalidEvent, "specversion", 1},
		{"mixed batch: not an object", batchType, nil, `[` + structured("") + `,` + structured("") + `,"x"]`, httpapi.ProblemMalformedRequest, "", 2},
		{"bad event in a batch", batchType, nil, `[` + structured("") + `,` + structured(`"subject":"",`) + `]`, httpapi.ProblemInvalidEvent, "subject", 1},
		{"same id twice in a batch", batchType, nil, `[` + structuredEvent(id2, "", ok) + `,` + structuredEvent(id2, "", ok) + `]`, httpapi.ProblemInvalidEvent, "id", 1},
		{"duplicate key in a batch", batchType, nil, `[` + structured("") + `,` + structuredEvent(id, "", `{"k":1,"k":2}`) + `]`, httpapi.ProblemInvalidEvent, "data.k", 1},
		{"data too deep in a batch", batchType, nil, `[` + structured("") + `,` + structuredEvent(id, "", strings.Repeat("[", 513)+strings.Repeat("]", 513)) + `]`, httpapi.ProblemInvalidEvent, "data", 1},
		// Binary mode.
		{"binary: wrong specversion", "application/json", binary("specversion", "0.3"), ok, httpapi.ProblemInvalidEvent, "specversion", -1},
		{"binary: missing specversion", "application/json", binary("specversion", "-"), ok, httpapi.ProblemInvalidEvent, "specversion", -1},
		{"binary: missing id", "application/json", binary("id", "-"), ok, httpapi.ProblemInvalidEvent, "id", -1},
		{"binary: missing source", "application/json", binary("source", "-"), ok, httpapi.ProblemInvalidEvent, "source", -1},
		{"binary: missing type", "application/json", binary("type", "-"), ok, httpapi.ProblemInvalidEvent, "type", -1},
		{"binary: no data", "application/json", binary(), ``, httpapi.ProblemInvalidEvent, "data", -1},
		{"binary: bad percent-encoding", "application/json", binary("subject", "50%zzoff"), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: cut percent-encoding", "application/json", binary("subject", "quiz%4"), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: overlong UTF-8", "application/json", binary("subject", "a%C0%A0b"), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: encoded control character", "application/json", binary("subject", "a%0Ab"), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: unclosed quote", "application/json", binary("subject", `"quiz`), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: header twice", "application/json", binary("subject", "a", "subject", "b"), ok, httpapi.ProblemInvalidEvent, "subject", -1},
		{"binary: ce-datacontenttype", "application/json", binary("datacontenttype", "application/json"), ok, httpapi.ProblemInvalidEvent, "datacontenttype", -1},
		{"binary: unknown extension", "application/json", binary("comexampleext", "v"), ok, httpapi.ProblemInvalidEvent, "comexampleext", -1},
		{"binary: not an attribute name", "application/json", binary("correlation-id", uuid.NewString()), ok, httpapi.ProblemInvalidEvent, "correlation-id", -1},
		{"binary: bad source", "application/json", binary("source", "quiz%20service"), ok, httpapi.ProblemInvalidEvent, "source", -1},
		{"binary: bad type", "application/json", binary("type", "quiz%20submitted"), ok, httpapi.ProblemInvalidEvent, "type", -1},
		{"binary: duplicate key in data", "application/json", binary(), `{"k":1,"k":2}`, httpapi.ProblemInvalidEvent, "data.k", -1},
		{"binary: data not JSON", "application/json", binary(), `{"k":`, httpapi.ProblemMalformedRequest, "", -1},
		{"binary: data too deep", "application/json", binary(), strings.Repeat("[", 513) + strings.Repeat("]", 513), httpapi.ProblemInvalidEvent, "data", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.publishHeaders(tc.contentType, tc.header, tc.body).problem(t, 400, tc.typ)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
			switch {
			case tc.event < 0 && p.Event != nil:
				t.Errorf("the problem names event %d (detail %q)", *p.Event, p.Detail)
			case tc.event >= 0 && (p.Event == nil || *p.Event != tc.event):
				t.Errorf("the problem names event %v, want %d (detail %q)", p.Event, tc.event, p.Detail)
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored by bad requests", n)
	}
}

// TestPublishCloudEventMediaTypesAnswer415: a CloudEvents format other
// than JSON, a charset other than UTF-8, and binary-mode data that is not
// application/json are refused before the body is read.
func TestPublishCloudEventMediaTypesAnswer415(t *testing.T) {
	h := newHarness(t, harnessOption{})
	binary := ceHeaders("specversion", "1.0", "id", uuid.NewString(), "source", "/s", "type", "quiz.submitted")
	for _, tc := range []struct {
		name, contentType string
		header            http.Header
	}{
		{"Avro format", "application/cloudevents+avro", nil},
		{"bare CloudEvents type", "application/cloudevents", nil},
		{"structured in Latin-1", structuredType + "; charset=latin1", nil},
		{"batch in UTF-16", batchType + "; charset=utf-16", nil},
		{"binary text", "text/plain", binary},
		{"binary without Content-Type", "", binary},
		{"binary XML", "application/xml", binary},
		{"binary other JSON type", "application/vnd.edupulse+json", binary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.publishHeaders(tc.contentType, tc.header, structuredEvent(uuid.New(), "", quizData(1))).problem(t, 415, httpapi.ProblemUnsupportedMediaType)
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

// TestPublishEnvelopeWithSpecversionSaysHowToSendACloudEvent: the issue's
// symptom. A structured CloudEvent sent as application/json is read as the
// bus's envelope, and the 400 says which Content-Type takes it.
func TestPublishEnvelopeWithSpecversionSaysHowToSendACloudEvent(t *testing.T) {
	h := newHarness(t, harnessOption{})
	p := h.publish(structuredEvent(uuid.New(), "", quizData(1))).problem(t, 400, httpapi.ProblemInvalidEvent)
	if !strings.Contains(p.Detail, structuredType) || p.Field != "specversion" {
		t.Fatalf("problem %+v", p)
	}
	// The same body as a structured CloudEvent is stored.
	if res := h.publishHeaders(structuredType, nil, structuredEvent(uuid.New(), "", quizData(1))); res.status != 201 {
		t.Fatalf("%d %s", res.status, res.body)
	}
}

func TestPublishCloudEventDataOverTheLimitAnswers413(t *testing.T) {
	h := newHarness(t, harnessOption{})
	data := fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":1,"pad":"%s"}`, uuid.New(), uuid.New(), strings.Repeat("x", eventbus.DefaultMaxDataBytes))
	h.publishHeaders(structuredType, nil, structuredEvent(uuid.New(), "", data)).problem(t, 413, httpapi.ProblemTooLarge)
	h.publishHeaders("application/json", ceHeaders("specversion", "1.0", "id", uuid.NewString(), "source", "/s", "type", "quiz.submitted"), data).
		problem(t, 413, httpapi.ProblemTooLarge)
	big := `[` + structuredEvent(uuid.New(), "", `{"pad":"`+strings.Repeat("x", httpapi.DefaultMaxBodyBytes)+`"}`) + `]`
	h.publishHeaders(batchType, nil, big).problem(t, 413, httpapi.ProblemTooLarge)
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}
