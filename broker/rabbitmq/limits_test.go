package rabbitmq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestEveryAcceptedEnvelopeCanBePublished is the promise of the input
// limits (G9): whatever envelope they accept, the relay can publish. For
// drafts with adversarial text (controls, spaces, any Unicode, lengths
// around the 255-byte AMQP short strings, JSON with escapes, surrogates and
// repeated keys), every one that event.CheckDraft accepts becomes an AMQP
// message that amqp091 sends and RabbitMQ confirms, arrives as sent, and is
// a CloudEvent that the CloudEvents Go SDK parses and validates; a consumer
// decodes it back to the same envelope.
func TestEveryAcceptedEnvelopeCanBePublished(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := testenv.Context(t, 2*time.Minute)
	b := open(t, testenv.AMQPURL())
	t.Cleanup(func() { _ = b.Close() })
	exchange, queue := testenv.Name("limits-x"), testenv.Name("limits-q")
	if err := b.DeclareExchange(ctx, exchange); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: queue, Bindings: []broker.Binding{{Exchange: exchange, Pattern: "#"}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.DeleteQueue(ctx, queue)
		_ = b.DeleteExchange(ctx, exchange)
	})
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	var sent []broker.Message
	rejected := map[string]int{}
	property := func(rt *rapid.T) {
		d := draftGen().Draw(rt, "draft")
		if d.Source == "" {
			d.Source = "eventbus" // what the bus fills in
		}
		if err := event.CheckDraft(&d); err != nil {
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				rt.Fatalf("CheckDraft: %v is not a *event.FieldError", err)
			}
			rejected[fe.Field]++
			return
		}
		env := event.Envelope{
			ID: uuid.Must(uuid.NewV7()), Type: d.Type, Source: d.Source, Subject: d.Subject,
			OccurredAt: d.OccurredAt.Truncate(event.TimePrecision), RecordedAt: time.Now().Truncate(event.TimePrecision),
			CorrelationID: uuid.New(), TraceParent: d.TraceParent, TraceState: d.TraceState,
			Position: rapid.Int64Range(1, 1<<62).Draw(rt, "position"), Data: d.Data,
		}
		if rapid.Bool().Draw(rt, "caused") {
			env.CausationID = uuid.New()
		}
		if env.Subject != "" {
			env.StreamVersion = rapid.Int64Range(1, 1<<62).Draw(rt, "version")
		}
		m, err := broker.EnvelopeMessage(env)
		if err != nil {
			rt.Fatalf("EnvelopeMessage: %v", err)
		}

		// The CloudEvents SDK parses and validates it.
		e := ce.New()
		if err := json.Unmarshal(m.Body, &e); err != nil {
			rt.Fatalf("the CloudEvents SDK cannot parse %s: %v", m.Body, err)
		}
		if err := e.Validate(); err != nil {
			rt.Fatalf("the CloudEvents SDK rejects %s: %v", m.Body, err)
		}
		if e.Type() != env.Type || e.Subject() != env.Subject || e.ID() != env.ID.String() || !bytes.Equal(e.Data(), env.Data) {
			rt.Fatalf("the CloudEvents SDK read %v from %s", e, m.Body)
		}
		// A consumer reads back the same envelope.
		back, err := broker.DecodeMessage(m)
		if err != nil {
			rt.Fatalf("DecodeMessage: %v", err)
		}
		if back.Type != env.Type || back.Source != env.Source || back.Subject != env.Subject || !bytes.Equal(back.Data, env.Data) ||
			back.TraceParent != env.TraceParent || back.TraceState != env.TraceState || !back.OccurredAt.Equal(env.OccurredAt) {
			rt.Fatalf("the envelope changed on its way round:\n%+v\n%+v", env, back)
		}

		// amqp091 sends it, and RabbitMQ confirms it.
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conf, err := pub.Publish(pctx, exchange, env.Type, m)
		if err != nil {
			rt.Fatalf("publish (type %d bytes, source %d bytes): %v", len(env.Type), len(env.Source), err)
		}
		select {
		case <-conf.Done():
		case <-pctx.Done():
			rt.Fatalf("no confirm within 10 s")
		}
		if !conf.Acked() {
			rt.Fatalf("RabbitMQ did not ack the message of %+v", env)
		}
		sent = append(sent, m)
	}
	// Ten runs of rapid's 100 checks each: a few hundred publishes.
	for range 10 {
		rapid.Check(t, property)
	}
	t.Logf("%d envelopes accepted and published; rejected, by field: %v", len(sent), rejected)
	if len(sent) == 0 {
		t.Fatal("the generators produced no acceptable envelope: the test proved nothing")
	}

	// Every message arrives as it was sent.
	br, err := b.Browse(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	for i, want := range sent {
		d, ok, err := br.Next(ctx)
		if err != nil || !ok {
			t.Fatalf("message %d of %d: %v, %v", i, len(sent), ok, err)
		}
		if d.MessageID != want.MessageID || d.AppID != want.AppID || d.Type != want.Type || d.RoutingKey != want.Type ||
			d.CorrelationID != want.CorrelationID || !bytes.Equal(d.Body, want.Body) || d.Header(broker.HeaderSubject) != want.Header(broker.HeaderSubject) {
			t.Fatalf("message %d arrived as\n%+v\nwant\n%+v", i, d.Message, want)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

// draftGen draws drafts whose fields are mostly valid and sometimes
// adversarial, so that many pass the limits with odd content, and the rest
// probe the limits' edges.
func draftGen() *rapid.Generator[event.Draft] {
	return rapid.Custom(func(t *rapid.T) event.Draft {
		return event.Draft{
			Type:        oneOf(t, "type", typeGen(), adversarialText()),
			Source:      oneOf(t, "source", sourceGen(), adversarialText()),
			Subject:     oneOf(t, "subject", rapid.StringN(0, 40, 520), adversarialText()),
			TraceParent: oneOf(t, "traceparent", rapid.Just(""), adversarialText()),
			TraceState:  oneOf(t, "tracestate", rapid.Just("vendor=a,b=c"), adversarialText()),
			OccurredAt: time.Unix(rapid.Int64Range(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()-1000,
				time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()+1000).Draw(t, "time"), rapid.Int64Range(0, 999999999).Draw(t, "nanos")),
			Data: []byte(jsonGen(3).Draw(t, "data")),
		}
	})
}

// oneOf draws from good three times in four, else from bad.
func oneOf(t *rapid.T, label string, good, bad *rapid.Generator[string]) string {
	if rapid.IntRange(0, 3).Draw(t, label+" kind") == 0 {
		return bad.Draw(t, label)
	}
	return good.Draw(t, label)
}

// adversarialText is text that breaks the rules, or nearly does: controls,
// white space, any Unicode, invalid UTF-8, and lengths around 255 bytes.
func adversarialText() *rapid.Generator[string] {
	controls := rapid.RuneFrom([]rune{0, '\t', '\n', '\r', 0x7f, 0x85, 0xa0, 0x2028, 0x2029, 0xfeff, 0xfffd}, unicode.Cc, unicode.Zs)
	return rapid.OneOf(
		rapid.String(),
		rapid.StringOf(controls),
		rapid.Map(rapid.SliceOfN(rapid.Byte(), 0, 20), func(b []byte) string { return string(b) }),
		rapid.Custom(func(t *rapid.T) string {
			n := rapid.IntRange(250, 260).Draw(t, "length")
			s := strings.Repeat("a", n)
			if rapid.Bool().Draw(t, "multibyte") {
				s = s[:n-2] + "é"
			}
			return s
		}),
		rapid.Custom(func(t *rapid.T) string {
			return rapid.StringN(1, 30, -1).Draw(t, "head") + string(controls.Draw(t, "control")) + rapid.StringN(0, 30, -1).Draw(t, "tail")
		}),
	)
}

// typeGen draws valid type names, some of them near 255 bytes.
func typeGen() *rapid.Generator[string] {
	word := rapid.StringMatching(`[a-zA-Z0-9_-]{1,12}`)
	return rapid.OneOf(
		rapid.Map(rapid.SliceOfN(word, 1, 4), func(w []string) string { return strings.Join(w, ".") }),
		rapid.Custom(func(t *rapid.T) string {
			return strings.Repeat("q", rapid.IntRange(240, 255).Draw(t, "long type"))
		}),
	)
}

// sourceGen draws URI-references of every shape RFC 3986 has, with escapes,
// IP literals, and lengths up to and past 255 bytes.
func sourceGen() *rapid.Generator[string] {
	pchars := rapid.SampledFrom([]string{"a", "Z", "0", "-", ".", "_", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", ":", "@", "%20", "%C3%A9"})
	segment := rapid.Map(rapid.SliceOfN(pchars, 0, 8), func(p []string) string { return strings.Join(p, "") })
	return rapid.Custom(func(t *rapid.T) string {
		var sb strings.Builder
		sb.WriteString(rapid.SampledFrom([]string{"", "", "", "http:", "https:", "urn:", "tag:", "x+y-z.1:", "1x:"}).Draw(t, "scheme"))
		if rapid.Bool().Draw(t, "authority") {
			sb.WriteString("//")
			sb.WriteString(rapid.SampledFrom([]string{"", "user@", "user:pw@", "u%41@"}).Draw(t, "userinfo"))
			sb.WriteString(rapid.SampledFrom([]string{"host.example", "HOST", "192.0.2.1", "[::1]", "[2001:db8::7]", "[::ffff:192.0.2.1]", "%C3%A9", "", "h_st", "x.example",
				"[v1.x]", "[::1", "a%41b", "[fe80::1%25en0]"}).Draw(t, "host"))
			sb.WriteString(rapid.SampledFrom([]string{"", "", ":", ":8080", ":8a"}).Draw(t, "port"))
			sb.WriteString("/")
		} else if rapid.Bool().Draw(t, "absolute") {
			sb.WriteString("/")
		}
		for i, n := 0, rapid.IntRange(0, 4).Draw(t, "segments"); i < n; i++ {
			if i > 0 {
				sb.WriteString("/")
			}
			sb.WriteString(segment.Draw(t, "segment"))
		}
		if rapid.Bool().Draw(t, "query") {
			sb.WriteString("?" + segment.Draw(t, "query") + "/?")
		}
		if rapid.Bool().Draw(t, "fragment") {
			sb.WriteString("#" + segment.Draw(t, "fragment"))
		}
		if rapid.IntRange(0, 7).Draw(t, "spoil") == 0 {
			bad := rapid.SampledFrom([]string{"%zz", "%2", " ", "\t", "[", "]", "#", "é", "{", "|", "\x00"}).Draw(t, "bad")
			at := rapid.IntRange(0, sb.Len()).Draw(t, "at")
			spoilt := sb.String()
			sb.Reset()
			sb.WriteString(spoilt[:at] + bad + spoilt[at:])
		}
		if rapid.IntRange(0, 4).Draw(t, "pad") == 0 {
			if sb.Len() == 0 {
				sb.WriteString("p")
			}
			for sb.Len() < rapid.IntRange(250, 258).Draw(t, "padded length") {
				sb.WriteString("a")
			}
		}
		return sb.String()
	})
}

// jsonGen draws JSON text, mostly valid, with escapes of every kind (lone
// surrogates among them), repeated keys, numbers of every form and odd
// white space.
func jsonGen(depth int) *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		kinds := 6
		if depth == 0 {
			kinds = 4
		}
		switch rapid.IntRange(0, kinds-1).Draw(t, "kind") {
		case 0:
			return jsonString().Draw(t, "string")
		case 1:
			return rapid.SampledFrom([]string{"0", "-0", "1.5e3", "-12.25E-2", "123456789012345678901234567890", "true", "false", "null"}).Draw(t, "literal")
		case 2, 3:
			return fmt.Sprint(rapid.Int64().Draw(t, "int"))
		case 4:
			n := rapid.IntRange(0, 4).Draw(t, "elements")
			parts := make([]string, n)
			for i := range parts {
				parts[i] = jsonGen(depth-1).Draw(t, "element")
			}
			return "[" + strings.Join(parts, ", ") + "]"
		default:
			n := rapid.IntRange(0, 4).Draw(t, "members")
			keys := make([]string, n)
			parts := make([]string, n)
			for i := range parts {
				keys[i] = jsonString().Draw(t, "key")
				if i > 0 && rapid.IntRange(0, 5).Draw(t, "repeat key") == 0 {
					keys[i] = keys[rapid.IntRange(0, i-1).Draw(t, "repeated")]
				}
				parts[i] = keys[i] + " :" + jsonGen(depth-1).Draw(t, "member")
			}
			return "{\n" + strings.Join(parts, ",\t") + "}"
		}
	})
}

// jsonString draws a JSON string literal with escapes.
func jsonString() *rapid.Generator[string] {
	piece := rapid.OneOf(
		rapid.StringOfN(rapid.RuneFrom(nil, unicode.L, unicode.N, unicode.P, unicode.S, unicode.Zs), 0, 6, -1),
		rapid.SampledFrom([]string{`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0000`, `\u001f`, `\u00e9`, `\u2028`, `\uffff`,
			`\ud83d\ude00`, `\uD83D\uDE00`, `\ud800`, `\udfff`, `\ud800\u0041`, `\ude00\ud83d`, "é", "😀", "\u2028"}),
	)
	return rapid.Map(rapid.SliceOfN(piece, 0, 5), func(p []string) string { return `"` + strings.Join(p, "") + `"` })
}
