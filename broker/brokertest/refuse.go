package brokertest

import (
	"errors"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/broker"
)

// testRefusedAlone: a message AMQP cannot carry (a property over 255 bytes,
// a routing key over 255 bytes) is refused with broker.ErrRefused before it
// is sent, and the publisher goes on publishing the others: one bad message
// must not break the connection that carries them (G9).
func testRefusedAlone(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	p := publisher(t, b, broker.PublisherOptions{})
	ctx := ctxFor(t)
	long := strings.Repeat("x", broker.MaxShortString+1)
	for name, m := range map[string]broker.Message{
		"app_id":         func() broker.Message { m := msg("a"); m.AppID = long; return m }(),
		"correlation_id": func() broker.Message { m := msg("c"); m.CorrelationID = long; return m }(),
		"type":           func() broker.Message { m := msg("t"); m.Type = long; return m }(),
	} {
		if _, err := p.Publish(ctx, broker.NamelessExchange, q, m); !errors.Is(err, broker.ErrRefused) {
			t.Fatalf("Publish with a %d-byte %s: error = %v, want one wrapping broker.ErrRefused", len(long), name, err)
		}
	}
	if _, err := p.Publish(ctx, broker.NamelessExchange, long, msg("k")); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Publish with a %d-byte routing key: error = %v, want one wrapping broker.ErrRefused", len(long), err)
	}
	c, err := p.Publish(ctx, broker.NamelessExchange, q, msg("fine"))
	if err != nil {
		t.Fatalf("Publish after refusals: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("confirmation never settled")
	}
	if !c.Acked() {
		t.Fatal("the message after the refused ones was not acked")
	}
	wantMessages(t, b, q, 1)
}
