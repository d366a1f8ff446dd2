package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// fuzzSeeds are messages as a consumer may receive them: what the relay
// publishes, and what a confused or hostile publisher could put on the
// exchange.
func fuzzSeeds(f *testing.F) {
	env := event.Envelope{
		ID: uuid.MustParse("0190d1e2-7c4a-7b3e-8f00-1234567890ab"), Type: edupulse.TypeQuizSubmitted, Source: "quiz-service",
		Subject: "learner-1", StreamVersion: 3, Position: 42,
		OccurredAt:    time.Date(2026, 1, 31, 12, 0, 0, 123456000, time.UTC),
		RecordedAt:    time.Date(2026, 1, 31, 12, 0, 0, 223456000, time.UTC),
		CorrelationID: uuid.MustParse("0190d1e2-7c4a-7b3e-8f00-0000000000cc"),
		TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Data:          json.RawMessage(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000002","score_raw":93}`),
	}
	m, err := broker.EnvelopeMessage(env)
	if err != nil {
		f.Fatal(err)
	}
	unknown := env
	unknown.Type, unknown.Data = "lesson.renamed", json.RawMessage(`{ "title" : "Ratios\u2028", "n": [1, 2.50, -0e3] }`)
	um, _ := broker.EnvelopeMessage(unknown)
	unfit := env
	unfit.Data = json.RawMessage(`{"quiz_id":5,"learner_id":"x","score_raw":"high"}`)
	fm, _ := broker.EnvelopeMessage(unfit)
	valid := string(m.Body)
	for _, s := range []struct {
		body        string
		contentType string
	}{
		{valid, m.ContentType},
		{string(um.Body), um.ContentType},
		{string(fm.Body), fm.ContentType},
		{valid, ""},
		{valid, "text/plain"},
		{valid, "APPLICATION/JSON; charset=utf-8"},
		{"", event.ContentType},
		{"null", event.ContentType},
		{"{}", event.ContentType},
		{"[]", event.ContentType},
		{"not json at all", event.ContentType},
		{"\xff\xfe{}", event.ContentType},
		{strings.Replace(valid, `"specversion":"1.0"`, `"specversion":"0.3"`, 1), event.ContentType},
		{strings.Replace(valid, `"id":"0190d1e2-7c4a-7b3e-8f00-1234567890ab"`, `"id":"42"`, 1), event.ContentType},
		{strings.Replace(valid, `"position":"42"`, `"position":"-1"`, 1), event.ContentType},
		{strings.Replace(valid, `"position":"42"`, `"position":1e30`, 1), event.ContentType},
		{strings.Replace(valid, `"streamversion":"3"`, `"streamversion":3`, 1), event.ContentType},
		{strings.Replace(valid, `"time":"`, `"time":"yesterday`, 1), event.ContentType},
		{strings.Replace(valid, `"data":{`, `"data_base64":"AAAA","data":{`, 1), event.ContentType},
		{strings.Replace(valid, `"datacontenttype":"application/json"`, `"datacontenttype":"text/xml"`, 1), event.ContentType},
		{strings.Replace(valid, `"data":{`, `"data":null,"x":{`, 1), event.ContentType},
		// What the input limits keep out of the store, as a hostile
		// publisher could still put it on the exchange.
		{strings.Replace(valid, `"type":`, `"type":"quiz.exploded","type":`, 1), event.ContentType},
		{strings.Replace(valid, `"subject":"learner-1"`, `"subject":"learner-\ud800"`, 1), event.ContentType},
		{strings.Replace(valid, `"source":"quiz-service"`, `"source":"http://[::1"`, 1), event.ContentType},
		{strings.Replace(valid, `"score_raw":93`, `"score_raw":93,"score_raw":"high"`, 1), event.ContentType},
		{`{"specversion":"1.0","id":"0190d1e2-7c4a-7b3e-8f00-1234567890ab","source":"s","type":"t","data":` + nested(9999) + `}`, event.ContentType},
		{`{"specversion":"1.0","id":"0190d1e2-7c4a-7b3e-8f00-1234567890ab","source":"s","type":"t","data":` + nested(10000) + `}`, event.ContentType},
	} {
		for kind := range uint8(5) {
			f.Add([]byte(s.body), s.contentType, kind, int64(kind)*3-2)
		}
	}
}

// fuzzHeaders returns the headers of a fuzzed message: the attempt header
// as the runtime writes it, or as something else entirely.
func fuzzHeaders(kind uint8, attempt int64) map[string]any {
	switch kind % 5 {
	case 1:
		return map[string]any{broker.HeaderAttempt: attempt}
	case 2:
		return map[string]any{broker.HeaderAttempt: int32(attempt)}
	case 3:
		return map[string]any{broker.HeaderAttempt: "3", broker.HeaderSubject: "learner-1"}
	case 4:
		return map[string]any{broker.HeaderAttempt: float64(attempt), broker.HeaderPosition: []byte("x")}
	}
	return nil
}

// FuzzDecodeMessage: whatever a message holds, DecodeMessage returns an
// envelope or an error wrapping event.ErrMalformed, never panics; an
// envelope it returns encodes and decodes back to itself, and the typed
// decoding the consumer's routes do fails only with event.ErrInvalid.
func FuzzDecodeMessage(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, contentType string, kind uint8, attempt int64) {
		m := broker.Message{ContentType: contentType, Body: body, Headers: fuzzHeaders(kind, attempt)}
		_ = m.IntHeader(broker.HeaderAttempt)
		_ = m.Header(broker.HeaderSubject)
		env, err := broker.DecodeMessage(m)
		if err != nil {
			if !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("DecodeMessage: %v; want an error wrapping ErrMalformed", err)
			}
			return
		}
		if env.Type == "" || env.Source == "" || len(env.Data) == 0 || !json.Valid(env.Data) {
			t.Fatalf("DecodeMessage accepted an envelope without type, source or JSON data: %+v", env)
		}
		again, err := event.Encode(env)
		if err != nil {
			t.Fatalf("Encode of a decoded envelope: %v", err)
		}
		back, err := event.Decode(again)
		if err != nil {
			t.Fatalf("Decode of a re-encoded envelope: %v\n%s", err, again)
		}
		if back.ID != env.ID || back.Type != env.Type || back.Source != env.Source || back.Subject != env.Subject ||
			!bytes.Equal(back.Data, env.Data) || back.Position != env.Position || back.StreamVersion != env.StreamVersion ||
			back.CorrelationID != env.CorrelationID || back.CausationID != env.CausationID ||
			back.TraceParent != env.TraceParent || back.TraceState != env.TraceState ||
			!back.OccurredAt.Equal(env.OccurredAt.Truncate(time.Microsecond)) {
			t.Fatalf("the envelope changed on its way round:\n%+v\n%+v", env, back)
		}
		for _, decode := range []func([]byte) error{
			func(b []byte) error { _, err := event.DecodeAs[edupulse.QuizSubmitted](b); return err },
			func(b []byte) error { _, err := event.DecodeAs[edupulse.LessonPublished](b); return err },
			func(b []byte) error { _, err := event.DecodeAs[edupulse.BadgeAwarded](b); return err },
		} {
			if err := decode(env.Data); err != nil && !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("DecodeAs: %v; want an error wrapping ErrInvalid", err)
			}
		}
	})
}

// FuzzConsumeDelivery puts each fuzzed message in a consumer group's queue
// on the in-process broker and checks what the consumer runtime does with
// it: it never loses it and never crashes on it. A message that decodes
// reaches its route's handler (the typed route when its payload fits) with
// the envelope DecodeMessage reads; anything else goes to the dead-letter
// queue with its body byte for byte.
func FuzzConsumeDelivery(f *testing.F) {
	fuzzSeeds(f)
	b := memory.New()
	const group = "fuzz"
	var mu sync.Mutex
	var handled []string // "typed id data" or "any id data"
	c, err := consume.New(b, consume.Config{Group: group, Exchange: "fuzz.events", MaxAttempts: 1, Logger: quietLogger()},
		consume.On(func(_ context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, "typed "+env.ID.String()+" "+string(env.Data))
			return nil
		}),
		consume.OnAny(func(_ context.Context, env event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, "any "+env.ID.String()+" "+string(env.Data))
			return nil
		}))
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	r, err := runConsumer(ctx, c)
	if err != nil {
		cancel()
		f.Fatal(err)
	}
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		r.stop()
		_ = pub.Close()
		_ = b.Close()
		cancel()
	})

	f.Fuzz(func(t *testing.T, body []byte, contentType string, kind uint8, attempt int64) {
		m := broker.Message{MessageID: "fuzz", ContentType: contentType, Body: body, Headers: fuzzHeaders(kind, attempt)}
		// What the runtime should do, worked out on its own.
		want := "dead-letter"
		env, err := broker.DecodeMessage(m)
		if err == nil {
			// The handler gets the data byte for byte (G6).
			want = "any " + env.ID.String() + " " + string(env.Data)
			if env.Type == edupulse.TypeQuizSubmitted {
				want = "dead-letter"
				if _, err := event.DecodeAs[edupulse.QuizSubmitted](env.Data); err == nil {
					want = "typed " + env.ID.String() + " " + string(env.Data)
				}
			}
		}
		mu.Lock()
		handled = handled[:0]
		mu.Unlock()
		// A stall is a failure, not a hang.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		before := c.Stats()
		if _, err := pub.Publish(ctx, broker.NamelessExchange, group, m); err != nil {
			t.Fatal(err)
		}
		deadline, _ := ctx.Deadline()
		for {
			st := c.Stats()
			if st.Handled+st.DeadLettered+st.Unrouted+st.Retried > before.Handled+before.DeadLettered+before.Unrouted+before.Retried && st.InFlight == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the consumer did nothing with the message within 10 s (stats %+v)", st)
			}
			time.Sleep(100 * time.Microsecond)
		}
		mu.Lock()
		got := append([]string(nil), handled...)
		mu.Unlock()
		if want != "dead-letter" {
			if len(got) != 1 || got[0] != want {
				t.Fatalf("handlers saw %q; want %q", got, want)
			}
			return
		}
		if len(got) != 0 {
			t.Fatalf("a message that does not decode reached a handler: %v", got)
		}
		br, err := b.Browse(ctx, consume.DeadLetterQueue(group))
		if err != nil {
			t.Fatal(err)
		}
		defer br.Close()
		d, ok, err := br.Next(ctx)
		if err != nil || !ok {
			t.Fatalf("the dead-letter queue is empty (%v): the message is lost", err)
		}
		if !bytes.Equal(d.Body, body) {
			t.Fatalf("the dead-lettered body differs from the message's")
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	})
}
