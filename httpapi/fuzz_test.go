package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// FuzzDecodeEvents feeds the POST /v1/events decoder arbitrary bodies. It
// must not panic; it refuses with a 400 *Problem; and what it accepts is
// strict JSON (no repeated key, no lone surrogate, anywhere in the body)
// within the input limits, which the store accepts once the bus has filled
// its defaults, with every event's data a verbatim piece of the body.
//
//	go test -fuzz FuzzDecodeEvents ./httpapi/
func FuzzDecodeEvents(f *testing.F) {
	id := uuid.NewString()
	for _, seed := range []string{
		`{"type":"quiz.submitted","data":{"quiz_id":"` + id + `","learner_id":"` + id + `","score_raw":1}}`,
		`{"id":"` + id + `","type":"a.b","subject":"s","expected_version":0,"correlation_id":"` + id + `","causation_id":"` + id + `","source":"x","data":[1, 2 ]}`,
		`{"events":[{"type":"a","data":1},{"type":"b","data":"<&>"}]}`,
		`{"events":[{"id":"` + id + `","type":"a","data":1},{"id":"` + id + `","type":"b","data":2}]}`,
		`{"events":[]}`, `{"events":null}`, `{"events":[{"events":[]}]}`, `{"events":{}}`,
		`{"type":"a","data":null}`, `{"type":"a"}`, `{"data":{}}`, `{"type":"a b","data":{}}`,
		`{"type":"a","data":{},"expected_version":-1,"subject":"s"}`, `{"type":"a","data":{},"expected_version":1e99}`,
		`{"type":"a","data":{},"subject":"\u0000"}`, `{"type":"a","data":{},"source":"\u0000"}`,
		`{"type":"a","data":{},"id":"00000000-0000-0000-0000-000000000000"}`, `{"type":"a","data":{},"Type":"b"}`,
		`{"type":"a","data":{},"extra":1}`, `{"type":"a","data":{}} x`, `{"type":"a","data":{"x":"\ud800"}}`,
		"{\"type\":\"a\",\"data\":\"\xff\"}", ``, ` `, `[]`, `null`, `"x"`, `{`, `{"type":`, `{"data":{"a":[[[[[[]]]]]]},"type":"t"}`,
		// The input limits.
		`{"type":"a","type":"b","data":{}}`, `{"type":"a","data":{"x":1,"x":2}}`, `{"type":"a","data":{"x":1,"\u0078":2}}`,
		`{"type":"a","data":{},"subject":"\ud800"}`, `{"type":"a","data":{},"subject":"\ud83d\ude00"}`, `{"type":"a","data":["\udc00"]}`,
		`{"type":"a","data":{},"source":"` + strings.Repeat("s", 256) + `"}`, `{"type":"a","data":{},"source":"` + strings.Repeat("s", 255) + `"}`,
		`{"type":"` + strings.Repeat("t", 256) + `","data":{}}`, `{"type":"a","data":{},"source":"%zz"}`, `{"type":"a","data":{},"source":"a\tb"}`,
		`{"type":"a","data":{},"source":"http://[::1"}`, `{"type":"a","data":{},"source":"a\r\nb"}`, `{"type":"a","data":{},"source":"urn:edupulse:quiz"}`,
		`{"type":"a","data":{},"source":"https://x.example/a?b#c"}`, `{"type":"a","data":{},"subject":" "}`,
		`{"type":"a","data":{},"correlation_id":"` + strings.Repeat("c", 256) + `"}`, `{"events":[{"type":"a","data":1},{"type":"a","data":{"k":1,"k":2}}]}`,
		`{"events":[{"type":"a","data":1}],"events":[]}`, `{"type":"a","data":` + strings.Repeat("[", 513) + strings.Repeat("]", 513) + `}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		drafts, batch, p := decodeEvents(body)
		if p != nil {
			if p.Status != 400 || problemTitles[p.Type] == "" || p.Detail == "" {
				t.Fatalf("problem %+v: want status 400, a known type and a detail", p)
			}
			if p.Event != nil && (!batch || *p.Event < 0) {
				t.Fatalf("problem names event %d of a body that is not a batch", *p.Event)
			}
			return
		}
		if len(drafts) == 0 || (!batch && len(drafts) != 1) {
			t.Fatalf("%d drafts, batch %v", len(drafts), batch)
		}
		if err := event.CheckJSON(body, 0); err != nil {
			t.Fatalf("decoder accepted a body that is not strict JSON: %v", err)
		}
		checkDecodedDrafts(t, body, drafts)
	})
}

// FuzzParseQuery feeds the query parsers of GET /v1/events, GET
// /v1/streams/{subject} and POST /v1/replay arbitrary query strings. They
// must not panic, must refuse with a 400 *Problem, and what they accept must
// be within bounds.
//
//	go test -fuzz FuzzParseQuery ./httpapi/
func FuzzParseQuery(f *testing.F) {
	cursor := store.Cursor{Order: 1 << 40, Position: 12345}.String()
	for _, seed := range []string{
		"", "limit=10", "limit=0", "limit=-5", "limit=10001", "limit=1e3", "limit=99999999999999999999", "limit=1&limit=2",
		"after=" + cursor, "after=" + cursor + "A", "after=AQ", "after=%zz", "type=a.b&type=c,d,,e", "type=a b", "type=" + strings.Repeat("a,", 200),
		"correlation_id=" + uuid.NewString(), "correlation_id=x", "subject=%00", "subject=%ff%fe", "subject=" + strings.Repeat("s", 600),
		"since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00.5+02:00", "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
		"since=yesterday", "until=2026-02-30T00:00:00Z", "unknown=1", "a;b", "from=1&limit=5", "from=0", "from=-1", "from=x",
		"queue=q&dry_run=true&rate=10.5", "rate=NaN", "rate=Inf", "rate=1e300", "max=0", "dry_run=2", "queue=%00",
		"from_position=10&to_position=20", "from_position=7&to_position=7", "from_position=20&to_position=10", "from_position=0&to_position=0",
		"from_position=-1", "to_position=x", "to_position=1.5", "from_position=99999999999999999999", "from_position=1&from_position=2",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		check := func(name string, p *Problem) {
			t.Helper()
			if p != nil && (p.Status != 400 || p.Type != ProblemInvalidParameter || p.Detail == "") {
				t.Fatalf("%s(%q): problem %+v: want status 400, type invalid-parameter and a detail", name, raw, p)
			}
		}
		checkFilter := func(name string, f store.Filter) {
			t.Helper()
			if len(f.Types) > maxTypes || len(f.Subject) > store.MaxSubjectLen || strings.ContainsRune(f.Subject, 0) {
				t.Fatalf("%s(%q) accepted %+v", name, raw, f)
			}
			for _, typ := range f.Types {
				if event.CheckTypeName(typ) != nil {
					t.Fatalf("%s(%q) accepted type %q", name, raw, typ)
				}
			}
			if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
				t.Fatalf("%s(%q) accepted an empty time range", name, raw)
			}
			if f.FromPosition < 0 || f.ToPosition < 0 || (f.FromPosition > 0 && f.ToPosition > 0 && f.ToPosition < f.FromPosition) {
				t.Fatalf("%s(%q) accepted positions %d to %d", name, raw, f.FromPosition, f.ToPosition)
			}
		}
		f, p := parseFilter(raw)
		check("parseFilter", p)
		if p == nil {
			checkFilter("parseFilter", f)
			if f.Limit < 1 || f.Limit > store.MaxLimit {
				t.Fatalf("parseFilter(%q) accepted limit %d", raw, f.Limit)
			}
		}
		sq, p := parseStreamQuery(raw)
		check("parseStreamQuery", p)
		if p == nil && (sq.From < 1 || sq.Limit < 1 || sq.Limit > store.MaxLimit) {
			t.Fatalf("parseStreamQuery(%q) accepted %+v", raw, sq)
		}
		req, p := parseReplay(raw)
		check("parseReplay", p)
		if p == nil {
			o := req.opts
			checkFilter("parseReplay", o.Filter)
			if o.Rate < 0 || o.Rate != o.Rate || o.Filter.Limit != 0 || len(o.Queue) > 255 || o.Exchange != "" {
				t.Fatalf("parseReplay(%q) accepted %+v", raw, o)
			}
			q, _ := url.ParseQuery(raw)
			if all, _ := strconv.ParseBool(q.Get("all")); !all && !o.Filter.Selective() {
				t.Fatalf("parseReplay(%q) accepted a replay of the whole store without all=true", raw)
			}
		}
	})
}

// FuzzReplayBody feeds the JSON body decoder of POST /v1/replay arbitrary
// bodies. It must not panic; it refuses with a 400 *Problem; and what it
// accepts stands for a query that names only the route's parameters.
//
//	go test -fuzz FuzzReplayBody ./httpapi/
func FuzzReplayBody(f *testing.F) {
	for _, seed := range []string{
		`{"type":"quiz.submitted","queue":"badges"}`, `{"type":["a.b","c.d"],"from_position":3,"to_position":9}`,
		`{"all":true}`, `{"all":"yes"}`, `{}`, `[]`, `null`, `{"type":[1]}`, `{"rate":1e400}`, `{"type":"a","type":"b"}`,
		`{"subject":"s"} {}`, `{"nope":1}`, `{"dry_run":true,"since":"2026-01-01T00:00:00Z"}`, `{"from_position":1.5}`, "{\"subject\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		values, p := replayBodyValues(body)
		if p != nil {
			if p.Status != 400 || p.Detail == "" {
				t.Fatalf("replayBodyValues(%q): problem %+v, want a 400 that explains", body, p)
			}
			return
		}
		if _, p := parseQuery(values.Encode(), replayParams, []string{"type"}); p != nil {
			t.Fatalf("replayBodyValues(%q) = %v, which names what the route does not take: %s", body, values, p.Detail)
		}
		req, p := parseReplay(values.Encode())
		if all, _ := strconv.ParseBool(values.Get("all")); p == nil && !all && !req.opts.Filter.Selective() {
			t.Fatalf("body %q replays the whole store without all", body)
		}
	})
}

// FuzzDecodeCloudEvents feeds the structured-mode and batched-mode
// decoders of POST /v1/events arbitrary bodies. They must not panic; they
// refuse with a 400 *Problem (naming an event only in a batch); and what
// they accept is strict JSON within the input limits, which the store
// accepts once the bus has filled its defaults, with every event's data a
// verbatim piece of the body; a structured event reads the same with the
// CloudEvents SDK.
//
//	go test -fuzz FuzzDecodeCloudEvents ./httpapi/
func FuzzDecodeCloudEvents(f *testing.F) {
	id, id2 := uuid.NewString(), uuid.NewString()
	ev := func(extra, data string) string {
		return `{"specversion":"1.0","id":"` + uuid.NewString() + `","source":"/s","type":"quiz.submitted",` + extra + `"data":` + data + `}`
	}
	for _, seed := range []string{
		ev("", `{"quiz_id":"`+id+`","score_raw":1}`),
		ev(`"subject":"s","time":"2026-01-02T03:04:05.123456789Z","datacontenttype":"application/json","correlationid":"`+id+`","causationid":"`+id2+
			`","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=b","expectedversion":"3",`, `[1, 2 ]`),
		ev(`"subject":"s","expectedversion":0,`, `"x"`), ev(`"subject":null,"dataschema":null,"data_base64":null,"x":null,`, `0`),
		ev(`"data_base64":"AA==",`, `1`), `{"specversion":"1.0","id":"` + id + `","source":"/s","type":"a","datacontenttype":"application/json","data_base64":"eyJrIjoxfQ=="}`, ev(`"comexample":"v",`, `1`), ev(`"Type":"b",`, `1`), ev(`"correlation_id":"x",`, `1`),
		ev(`"position":"1",`, `1`), ev(`"time":"0000-01-01T00:00:00Z",`, `1`), ev(`"datacontenttype":"text/plain",`, `1`),
		ev(`"sp\u0065cversion":"1.0",`, `1`), ev(`"subject":"\ud800",`, `1`), ev(`"subject":"a\u0085b",`, `1`), ev(`"tracestate":"a=b",`, `1`),
		ev(`"expectedversion":1e3,"subject":"s",`, `1`), ev(`"expectedversion":99999999999999999999,"subject":"s",`, `1`),
		ev(``, `null`), ev(``, `{"k":1,"k":2}`), ev(``, strings.Repeat("[", 513)+strings.Repeat("]", 513)),
		`{"specversion":"0.3","id":"` + id + `","source":"/s","type":"a","data":1}`, `{"specversion":"1.0"}`, `{}`, `[]`, `null`, ``, ` `, `{`, `"x"`,
		`[` + ev("", "1") + `,` + ev("", "2") + `]`, `[` + ev("", "1") + `,{"type":"a","data":1}]`, `[1]`, `[[]]`,
		`[{"specversion":"1.0","id":"` + id + `","source":"/s","type":"a","data":1},{"specversion":"1.0","id":"` + id + `","source":"/s","type":"a","data":2}]`,
		"{\"specversion\":\"1.0\",\"data\":\"\xff\"}",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		var drafts []event.Draft
		var p *Problem
		if batch {
			drafts, p = decodeCloudEventBatch(body)
		} else {
			var d event.Draft
			if d, p = decodeStructured(body); p == nil {
				drafts = []event.Draft{d}
			}
		}
		if p != nil {
			if p.Status != 400 || problemTitles[p.Type] == "" || p.Detail == "" {
				t.Fatalf("problem %+v: want status 400, a known type and a detail", p)
			}
			if p.Event != nil && (!batch || *p.Event < 0) {
				t.Fatalf("problem names event %d of a body that is not a batch", *p.Event)
			}
			return
		}
		if len(drafts) == 0 {
			t.Fatal("no drafts and no problem")
		}
		if err := event.CheckJSON(body, 0); err != nil || !json.Valid(body) {
			t.Fatalf("decoder accepted a body that is not strict JSON: %v", err)
		}
		checkDecodedDrafts(t, body, drafts)
		checkSDKReadsBack(t, drafts)
	})
}

// checkSDKReadsBack checks that the CloudEvents SDK reads each draft, as
// the bus writes it once stored, with the attributes the decoder read.
// (Not the body itself: the SDK panics on some valid input, such as
// "data_base64": null.)
func checkSDKReadsBack(t *testing.T, drafts []event.Draft) {
	t.Helper()
	for _, d := range drafts {
		env := event.Envelope{ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject, OccurredAt: d.OccurredAt,
			CorrelationID: d.CorrelationID, CausationID: d.CausationID, TraceParent: d.TraceParent, TraceState: d.TraceState,
			Position: 1, StreamVersion: 1, RecordedAt: d.OccurredAt, Data: d.Data}
		b, err := event.Encode(env)
		if err != nil {
			t.Fatalf("encode %+v: %v", d, err)
		}
		e := cloudevents.New()
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("the CloudEvents SDK cannot read %s: %v", b, err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("the CloudEvents SDK refuses %s: %v", b, err)
		}
		ext := e.Extensions()
		if e.ID() != d.ID.String() || e.Source() != d.Source || e.Type() != d.Type || e.Subject() != d.Subject ||
			!e.Time().Equal(d.OccurredAt.Truncate(event.TimePrecision)) || !bytes.Equal(e.Data(), d.Data) ||
			(d.TraceParent != "" && ext[event.AttrTraceParent] != d.TraceParent) || (d.TraceState != "" && ext[event.AttrTraceState] != d.TraceState) {
			t.Fatalf("the SDK reads %s as %v, the decoder read %+v", b, e, d)
		}
	}
}

// checkDecodedDrafts checks drafts a decoder accepted from body: each
// one's data is a piece of body, and the store accepts them once the bus
// has filled its defaults (what it fills in before it stores).
func checkDecodedDrafts(t *testing.T, body []byte, drafts []event.Draft) {
	t.Helper()
	for i := range drafts {
		d := &drafts[i]
		if !bytes.Contains(body, d.Data) && !bytes.Contains(body, []byte("data_base64")) {
			t.Fatalf("draft %d: data %q is not a piece of the body", i, d.Data)
		}
		if d.ID == uuid.Nil {
			d.ID = uuid.New()
		}
		if d.Source == "" {
			d.Source = "fuzz"
		}
		if d.CorrelationID == uuid.Nil {
			d.CorrelationID = uuid.New()
		}
		if d.OccurredAt.IsZero() {
			d.OccurredAt = time.Now()
		}
	}
	if err := store.CheckDrafts(drafts); err != nil {
		t.Fatalf("decoder accepted what the store refuses: %v", err)
	}
}

// FuzzDecodeBinary feeds the binary-mode decoder arbitrary ce- header
// values, an arbitrary extension header and body. It must not panic; it
// refuses with a 400 *Problem; what it accepts the store accepts, with the
// body as the data. And a value percent-encoded as the HTTP binding says
// decodes to itself.
//
//	go test -fuzz FuzzDecodeBinary ./httpapi/
func FuzzDecodeBinary(f *testing.F) {
	id := uuid.NewString()
	f.Add("1.0", id, "/s", "quiz.submitted", "", "", "", []byte(`{"a":1}`))
	f.Add("1.0", id, "/s", "a.b", "Euro%20%E2%82%AC%20%F0%9F%98%80", "Ce-Correlationid", `"`+id+`"`, []byte(`[1]`))
	f.Add("1.0", id, "/s", "a.b", "s", "Ce-Expectedversion", "0", []byte(`1`))
	f.Add("1.0", id, "/s", "a.b", "%zz", "Ce-Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", []byte(`"x"`))
	f.Add("1.0", id, "/s", "a.b", "a%C0%A0b", "Ce-Tracestate", "a=b", []byte(`{"k":1,"k":2}`))
	f.Add("0.3", "x", "", "a b", `"q\"`, "Ce-Datacontenttype", "application/json", []byte(``))
	f.Add("1.0", id, "/s", "a.b", "a%0Ab", "Ce-Comexample", "v", []byte("\xff"))
	f.Add("1.0", id, "%zz", "a.b", "\x85", "Ce-Correlation-Id", "v", []byte(`null`))
	f.Fuzz(func(t *testing.T, specversion, id, source, typ, subject, extName, extValue string, body []byte) {
		h := http.Header{}
		for _, kv := range [][2]string{{"Ce-Specversion", specversion}, {"Ce-Id", id}, {"Ce-Source", source}, {"Ce-Type", typ},
			{"Ce-Subject", subject}, {extName, extValue}} {
			if kv[0] != "" && kv[1] != "" {
				h.Add(kv[0], kv[1])
			}
		}
		d, p := decodeBinary(h, body)
		if p != nil {
			if p.Status != 400 || problemTitles[p.Type] == "" || p.Detail == "" || p.Event != nil {
				t.Fatalf("problem %+v: want status 400, a known type, a detail and no event", p)
			}
		} else {
			if !bytes.Equal(d.Data, body) {
				t.Fatalf("data %q, body %q", d.Data, body)
			}
			if err := event.CheckJSON(body, 0); err != nil {
				t.Fatalf("decoder accepted data that is not strict JSON: %v", err)
			}
			drafts := []event.Draft{d}
			checkDecodedDrafts(t, body, drafts)
			checkSDKReadsBack(t, drafts)
		}
		// Percent-encoding round trip (HTTP binding 3.1.3.2).
		if utf8.ValidString(subject) {
			var enc strings.Builder
			for i := 0; i < len(subject); i++ {
				if c := subject[i]; c <= ' ' || c == '"' || c == '%' || c >= 0x7f {
					fmt.Fprintf(&enc, "%%%02X", c)
				} else {
					enc.WriteByte(c)
				}
			}
			if got, why := decodeHeaderValue(enc.String()); why != "" || got != subject {
				t.Fatalf("%q encodes to %q, which decodes to %q (%s)", subject, enc.String(), got, why)
			}
		}
	})
}
