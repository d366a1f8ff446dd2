package broker_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source returns a Next that yields n messages in batches of 10, then EOF.
func source(exchange string, n int) func(context.Context) ([]broker.Outgoing[int], error) {
	next := 0
	return func(ctx context.Context) ([]broker.Outgoing[int], error) {
		if next >= n {
			return nil, io.EOF
		}
		var out []broker.Outgoing[int]
		for ; next < n && len(out) < 10; next++ {
			out = append(out, broker.Outgoing[int]{Exchange: exchange, RoutingKey: "t",
				Message: broker.Message{MessageID: strconv.Itoa(next), Body: []byte("{}")}, Tag: next})
		}
		return out, nil
	}
}

func setup(t *testing.T, b broker.Broker) broker.Publisher {
	t.Helper()
	ctx := context.Background()
	if err := b.DeclareExchange(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: "q", Bindings: []broker.Binding{{Exchange: "x", Pattern: "#"}}}); err != nil {
		t.Fatal(err)
	}
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func TestPipelineConfirmsInOrder(t *testing.T) {
	b := memory.New()
	defer b.Close()
	pub := setup(t, b)
	var got []int
	err := broker.Pipeline(context.Background(), pub, broker.PipelineConfig[int]{
		Window: 7, Next: source("x", 100), Confirmed: func(tag int) { got = append(got, tag) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range got {
		if tag != i {
			t.Fatalf("confirmed tag %d at %d: out of order", tag, i)
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d confirmed, want 100", len(got))
	}
}

// TestPipelineStopsWhenConfirmsStall: a message whose confirm never comes
// (here: nobody consumes it, and the broker confirms on delivery) must not
// hold a stopping pipeline longer than DrainTimeout.
func TestPipelineStopsWhenConfirmsStall(t *testing.T) {
	b := memory.New()
	defer b.Close()
	pub := setup(t, b.DeliveryConfirmed())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- broker.Pipeline(ctx, pub, broker.PipelineConfig[int]{
			Window: 10, Next: source("x", 5), Confirmed: func(int) {}, DrainTimeout: 200 * time.Millisecond,
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pipeline = %v, want the deadline: the drain did not complete", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pipeline waits for a confirm that never comes, ignoring its context")
	}
}

// TestPipelineReportsNacks: a message the broker refuses stops the pipeline
// with ErrNacked or ErrClosed, and nothing after it is reported confirmed.
func TestPipelineReportsARefusedMessage(t *testing.T) {
	b := memory.New()
	defer b.Close()
	pub := setup(t, b)
	var confirmed int
	err := broker.Pipeline(context.Background(), pub, broker.PipelineConfig[int]{
		Window: 10, Next: source("missing-exchange", 5), Confirmed: func(int) { confirmed++ },
	})
	if err == nil || confirmed != 0 {
		t.Fatalf("Pipeline to a missing exchange = %v with %d confirmed; want an error and none", err, confirmed)
	}
}

// TestPipelineSkipsInOrder: a skipped message is not published, and its tag
// is confirmed in its place among the others.
func TestPipelineSkipsInOrder(t *testing.T) {
	b := memory.New()
	defer b.Close()
	pub := setup(t, b)
	base := source("x", 30)
	next := func(ctx context.Context) ([]broker.Outgoing[int], error) {
		out, err := base(ctx)
		for i := range out {
			out[i].Skip = out[i].Tag%3 == 0
		}
		return out, err
	}
	var got []int
	err := broker.Pipeline(context.Background(), pub, broker.PipelineConfig[int]{
		Window: 4, Next: next, Confirmed: func(tag int) { got = append(got, tag) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range got {
		if tag != i {
			t.Fatalf("confirmed %v; want 0..29 in order", got)
		}
	}
	if len(got) != 30 {
		t.Fatalf("confirmed %d tags, want 30", len(got))
	}
	info, err := b.InspectQueue(context.Background(), "q")
	if err != nil {
		t.Fatal(err)
	}
	if info.Messages != 20 {
		t.Fatalf("queue holds %d messages, want the 20 not skipped", info.Messages)
	}
}
