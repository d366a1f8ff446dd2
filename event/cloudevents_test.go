package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

func sampleEnvelope() event.Envelope {
	return event.Envelope{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          "quiz.submitted",
		Source:        "quiz-service",
		Subject:       "quiz-42",
		StreamVersion: 7,
		OccurredAt:    time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC),
		RecordedAt:    time.Date(2026, 11, 27, 8, 0, 0, 1000, time.UTC),
		CorrelationID: uuid.Must(uuid.NewV7()),
		CausationID:   uuid.Must(uuid.NewV7()),
		TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:    "rojo=00f067aa0ba902b7",
		Position:      42,
		Data:          json.RawMessage(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","score_raw":95}`),
	}
}

// TestCloudEventsSDKAcceptsEnvelopes: the official SDK must parse and
// validate every envelope unchanged, also with positions beyond 32 bits.
func TestCloudEventsSDKAcceptsEnvelopes(t *testing.T) {
	for _, pos := range []int64{1, 1<<31 - 1, 1 << 31, 1<<31 + 12345, 1<<62 + 3} {
		env := sampleEnvelope()
		env.Position = pos
		env.StreamVersion = pos
		b, err := event.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		ce := cloudevents.NewEvent()
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatalf("position %d: SDK cannot parse %s: %v", pos, b, err)
		}
		if err := ce.Validate(); err != nil {
			t.Fatalf("position %d: SDK validation: %v", pos, err)
		}
		if ce.ID() != env.ID.String() || ce.Type() != env.Type || ce.Source() != env.Source || ce.Subject() != env.Subject {
			t.Fatalf("SDK read different attributes: %v", ce)
		}
		if !ce.Time().Equal(env.OccurredAt) {
			t.Fatalf("SDK time %v, want %v", ce.Time(), env.OccurredAt)
		}
		if got := ce.Extensions()[event.AttrPosition]; got != strings.TrimSpace(itoa(pos)) {
			t.Fatalf("SDK position extension = %v (%T), want the decimal string %d", got, got, pos)
		}
		if string(ce.Data()) != string(env.Data) {
			t.Fatalf("SDK data = %s, want %s", ce.Data(), env.Data)
		}
		if ce.DataContentType() != event.DataContentType {
			t.Fatalf("SDK datacontenttype = %q", ce.DataContentType())
		}
	}
}

// TestErasedAttribute: an erased event carries "erased": true, which the
// CloudEvents SDK accepts as a boolean extension and Decode reads back; an
// event that is not erased carries no such attribute.
func TestErasedAttribute(t *testing.T) {
	env := sampleEnvelope()
	env.Erased = true
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	ce := cloudevents.NewEvent()
	if err := json.Unmarshal(b, &ce); err != nil {
		t.Fatalf("SDK cannot parse %s: %v", b, err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("SDK validation: %v", err)
	}
	if got := ce.Extensions()[event.AttrErased]; got != true {
		t.Fatalf("SDK erased extension = %v (%T), want true", got, got)
	}
	back, err := event.Decode(b)
	if err != nil || !back.Erased {
		t.Fatalf("Decode: erased %v, %v", back.Erased, err)
	}
	env.Erased = false
	if b, _ := event.Encode(env); strings.Contains(string(b), `"erased"`) {
		t.Fatalf("an event not erased carries the attribute: %s", b)
	}
	for _, bad := range []string{`1`, `"yes"`, `{}`} {
		raw := strings.Replace(string(b), `"data":`, `"erased":`+bad+`,"data":`, 1)
		if _, err := event.Decode([]byte(raw)); !errors.Is(err, event.ErrMalformed) {
			t.Errorf("erased %s: %v, want ErrMalformed", bad, err)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestTimeHasSubSecondPrecision(t *testing.T) {
	env := sampleEnvelope() // on a whole second
	b, _ := event.Encode(env)
	if !strings.Contains(string(b), `"time":"2026-11-27T08:00:00.000000Z"`) {
		t.Fatalf("time not written with a fraction: %s", b)
	}
}

func TestRoundTrip(t *testing.T) {
	env := sampleEnvelope()
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	var got event.Envelope
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	env.CommitOrder = 0 // not on the wire
	if got.ID != env.ID || got.Position != env.Position || got.StreamVersion != env.StreamVersion ||
		got.CausationID != env.CausationID || got.CorrelationID != env.CorrelationID ||
		got.TraceParent != env.TraceParent || got.TraceState != env.TraceState ||
		!got.OccurredAt.Equal(env.OccurredAt) || !got.RecordedAt.Equal(env.RecordedAt) ||
		string(got.Data) != string(env.Data) || got.Subject != env.Subject {
		t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", got, env)
	}
	again, _ := event.Encode(got)
	if string(again) != string(b) {
		t.Fatalf("re-encoding differs:\n%s\n%s", again, b)
	}
}

// TestUnknownDataIsByteForByte: data of any shape leaves the encoder and the
// decoder exactly as it came in (G6).
func TestUnknownDataIsByteForByte(t *testing.T) {
	for _, data := range []string{
		`{"z":1,"a":2}`,
		"{ \"spaced\" : [ 1 , 2 ,\n 3 ] }",
		`{"dup":1,"dup":2}`,
		`{"html":"<a href=\"x\">&amp;</a>","u":"\u00e9\u2028"}`,
		`{"big":123456789012345678901234567890,"f":1.50}`,
	} {
		env := sampleEnvelope()
		env.Type = "future.event"
		env.Data = json.RawMessage(data)
		b, err := event.Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"data":`+data+`}`) {
			t.Fatalf("encoded data is not verbatim: %s", b)
		}
		got, err := event.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != data {
			t.Fatalf("decoded data %q, want %q", got.Data, data)
		}
		if again, _ := event.Encode(got); string(again) != string(b) {
			t.Fatalf("re-encoded envelope differs")
		}
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good, _ := event.Encode(sampleEnvelope())
	cases := map[string]string{
		"not json":          `{"specversion":`,
		"not an object":     `[1,2]`,
		"wrong specversion": strings.Replace(string(good), `"specversion":"1.0"`, `"specversion":"0.3"`, 1),
		"id not uuid":       strings.Replace(string(good), `"id":"`, `"id":"x`, 1),
		"no type":           strings.Replace(string(good), `"type":"quiz.submitted"`, `"type":""`, 1),
		"binary data":       strings.Replace(string(good), `"datacontenttype":"application/json"`, `"datacontenttype":"application/octet-stream"`, 1),
		"bad time":          strings.Replace(string(good), `"time":"2026`, `"time":"yesterday`, 1),
		"bad position":      strings.Replace(string(good), `"position":"42"`, `"position":"-4"`, 1),
		"no data":           `{"specversion":"1.0","id":"0190d1e2-0000-7000-8000-000000000001","source":"s","type":"t"}`,
		"invalid utf8":      "{\"specversion\":\"1.0\",\"id\":\"\xff\"}",
	}
	for name, in := range cases {
		_, err := event.Decode([]byte(in))
		if !errors.Is(err, event.ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
	}
}

func TestEncodeEscapesAttributes(t *testing.T) {
	env := sampleEnvelope()
	env.Source = "svc \"quoted\" \\ \n\t\x01 \xff"
	env.Subject = "</script>"
	b, err := event.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	var got event.Envelope
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("encoded attributes do not decode: %v\n%s", err, b)
	}
	if got.Source != "svc \"quoted\" \\ \n\t\x01 \ufffd" || got.Subject != env.Subject {
		t.Fatalf("attributes changed: %q %q", got.Source, got.Subject)
	}
}

// FuzzDecode: whatever arrives, decoding never panics, and what decodes
// re-encodes to bytes that decode to the same envelope.
func FuzzDecode(f *testing.F) {
	good, _ := event.Encode(sampleEnvelope())
	f.Add(good)
	f.Add([]byte(`{"specversion":"1.0","id":"0190d1e2-0000-7000-8000-000000000001","source":"s","type":"t","data":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"specversion":"1.0","position":12345678901234,"streamversion":"1","data":"x"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"data":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := event.Decode(b)
		if err != nil {
			return
		}
		again, err := event.Encode(env)
		if err != nil {
			t.Fatalf("decoded envelope does not encode: %v", err)
		}
		env2, err := event.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v\n%s", err, again)
		}
		if string(env2.Data) != string(env.Data) || env2.ID != env.ID || env2.Position != env.Position {
			t.Fatalf("round trip changed the envelope")
		}
	})
}
