package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

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

// heldPublisher confirms every message at once but those the test holds,
// which settle when the test says; it logs publishes and settlements.
type heldPublisher struct {
	mu   sync.Mutex
	log  []string
	held map[string]*heldConfirm
	done chan struct{}
}

type heldConfirm struct {
	p     *heldPublisher
	id    string
	done  chan struct{}
	acked bool
}

func (c *heldConfirm) Done() <-chan struct{} { return c.done }
func (c *heldConfirm) Acked() bool           { return c.acked }

// settle settles the held confirmation as acked or nacked.
func (c *heldConfirm) settle(acked bool) {
	c.p.record("settle " + c.id)
	c.acked = acked
	close(c.done)
}

type ackedConfirm struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (ackedConfirm) Done() <-chan struct{} { return closedChan }
func (ackedConfirm) Acked() bool           { return true }

func (p *heldPublisher) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, s)
}

func (p *heldPublisher) published() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, ", ")
}

func (p *heldPublisher) Publish(_ context.Context, _, _ string, m broker.Message) (broker.Confirmation, error) {
	p.record("publish " + m.MessageID)
	if c, ok := p.held[m.MessageID]; ok {
		return c, nil
	}
	return ackedConfirm{}, nil
}
func (p *heldPublisher) Done() <-chan struct{} { return p.done }
func (p *heldPublisher) Close() error          { return nil }

// streamSource yields the messages named by ids, in one batch: "s1" is
// the first message of stream s.
func streamSource(ids ...string) func(context.Context) ([]broker.Outgoing[string], error) {
	sent := false
	return func(ctx context.Context) ([]broker.Outgoing[string], error) {
		if sent {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		sent = true
		var out []broker.Outgoing[string]
		for _, id := range ids {
			out = append(out, broker.Outgoing[string]{Exchange: "x", RoutingKey: "t", Stream: id[:1], Tag: id,
				Message: broker.Message{MessageID: id, Body: []byte("{}")}})
		}
		return out, nil
	}
}

// TestPipelineKeepsAStreamOneAtATime: a message waits for the ack of the
// one before it of its stream, while the messages of other streams after
// it go on; after a nack, nothing more of the stream is published. Tags
// are confirmed in Next's order all the same.
func TestPipelineKeepsAStreamOneAtATime(t *testing.T) {
	for _, acked := range []bool{true, false} {
		t.Run(fmt.Sprintf("acked=%v", acked), func(t *testing.T) {
			p := &heldPublisher{done: make(chan struct{})}
			s1 := &heldConfirm{p: p, id: "s1", done: make(chan struct{})}
			p.held = map[string]*heldConfirm{"s1": s1}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var mu sync.Mutex
			var confirmed []string
			done := make(chan error, 1)
			go func() {
				done <- broker.Pipeline(ctx, p, broker.PipelineConfig[string]{Window: 10,
					Next: streamSource("s1", "t1", "s2", "u1"),
					Confirmed: func(tag string) {
						mu.Lock()
						confirmed = append(confirmed, tag)
						mu.Unlock()
						if tag == "u1" {
							cancel()
						}
					}})
			}()
			// t1 and u1 go while s1 awaits its confirm; s2 waits.
			for !strings.HasSuffix(p.published(), "publish u1") {
				if ctx.Err() != nil {
					t.Fatalf("u1 was not published: %q", p.published())
				}
				runtime.Gosched()
			}
			s1.settle(acked)
			err := <-done
			got := p.published()
			if acked {
				want := "publish s1, publish t1, publish u1, settle s1, publish s2"
				if got != want || err != nil || strings.Join(confirmed, ",") != "s1,t1,s2,u1" {
					t.Fatalf("Pipeline = %v, log %q, confirmed %v; want nil, %q and s1,t1,s2,u1", err, got, confirmed, want)
				}
				return
			}
			if want := "publish s1, publish t1, publish u1, settle s1"; got != want || !errors.Is(err, broker.ErrNacked) || len(confirmed) != 0 {
				t.Fatalf("Pipeline = %v, log %q, confirmed %v; want ErrNacked, %q and none confirmed", err, got, confirmed, want)
			}
		})
	}
}

// laggingPublisher confirms its messages in publish order, one at a time,
// on a goroutine of its own, so that many are in flight; it records, per
// stream, the order of publishes and whether the stream's previous message
// was already acked when the next was published.
type laggingPublisher struct {
	mu       sync.Mutex
	queue    []*heldConfirm
	last     map[string]*heldConfirm
	order    map[string][]string
	overlaps []string
	wake     chan struct{}
	done     chan struct{}
}

func newLaggingPublisher() *laggingPublisher {
	p := &laggingPublisher{last: map[string]*heldConfirm{}, order: map[string][]string{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.settle()
	return p
}

func (p *laggingPublisher) settle() {
	for {
		select {
		case <-p.wake:
		case <-p.done:
			return
		}
		for {
			p.mu.Lock()
			if len(p.queue) == 0 {
				p.mu.Unlock()
				break
			}
			c := p.queue[0]
			p.queue = p.queue[1:]
			p.mu.Unlock()
			c.acked = true
			close(c.done)
			runtime.Gosched()
		}
	}
}

func (p *laggingPublisher) Publish(_ context.Context, _, _ string, m broker.Message) (broker.Confirmation, error) {
	stream := m.Headers["stream"].(string)
	c := &heldConfirm{id: m.MessageID, done: make(chan struct{})}
	p.mu.Lock()
	if last, ok := p.last[stream]; ok && stream != "" {
		select {
		case <-last.done:
		default:
			p.overlaps = append(p.overlaps, fmt.Sprintf("%s published while %s awaited its confirm", m.MessageID, last.id))
		}
	}
	p.last[stream] = c
	p.order[stream] = append(p.order[stream], m.MessageID)
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return c, nil
}
func (p *laggingPublisher) Done() <-chan struct{} { return nil }
func (p *laggingPublisher) Close() error          { close(p.done); return nil }

// TestPipelineStreamsProperty: whatever the streams of the messages and
// the window, every tag is confirmed in Next's order, each stream is
// published in its order, and never two messages of one stream at once.
func TestPipelineStreamsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		streams := rapid.SliceOfN(rapid.IntRange(0, 5), 1, 300).Draw(t, "streams")
		window := rapid.IntRange(1, 40).Draw(t, "window")
		batchSize := rapid.IntRange(1, 50).Draw(t, "batch")
		want := map[string][]string{}
		var all []broker.Outgoing[int]
		for i, s := range streams {
			stream := ""
			if s > 0 { // 0: no stream
				stream = "s" + strconv.Itoa(s)
			}
			id := strconv.Itoa(i)
			all = append(all, broker.Outgoing[int]{Exchange: "x", RoutingKey: "t", Stream: stream, Tag: i,
				Message: broker.Message{MessageID: id, Headers: map[string]any{"stream": stream}}})
			if stream != "" {
				want[stream] = append(want[stream], id)
			}
		}
		next := func(context.Context) ([]broker.Outgoing[int], error) {
			if len(all) == 0 {
				return nil, io.EOF
			}
			n := min(batchSize, len(all))
			out := all[:n]
			all = all[n:]
			return out, nil
		}
		p := newLaggingPublisher()
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var confirmed []int
		err := broker.Pipeline(ctx, p, broker.PipelineConfig[int]{Window: window, Next: next,
			Confirmed: func(tag int) { confirmed = append(confirmed, tag) }})
		if err != nil {
			t.Fatalf("Pipeline: %v", err)
		}
		for i, tag := range confirmed {
			if tag != i {
				t.Fatalf("confirmed %v: want 0..%d in order", confirmed, len(streams)-1)
			}
		}
		if len(confirmed) != len(streams) {
			t.Fatalf("confirmed %d tags, want %d", len(confirmed), len(streams))
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.overlaps) > 0 {
			t.Fatalf("two messages of one stream in flight: %v", p.overlaps)
		}
		for stream, ids := range want {
			if got := strings.Join(p.order[stream], ","); got != strings.Join(ids, ",") {
				t.Fatalf("stream %s published as %s, want %s", stream, got, strings.Join(ids, ","))
			}
		}
	})
}

// TestPipelineStopsWithAHeldMessage: when ctx ends while a message is held
// behind its stream, Pipeline drains what is in flight, reports the tags
// before the held one, and returns without publishing it.
func TestPipelineStopsWithAHeldMessage(t *testing.T) {
	p := &heldPublisher{done: make(chan struct{})}
	s1 := &heldConfirm{p: p, id: "s1", done: make(chan struct{})}
	p.held = map[string]*heldConfirm{"s1": s1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var confirmed []string
	done := make(chan error, 1)
	go func() {
		done <- broker.Pipeline(ctx, p, broker.PipelineConfig[string]{Window: 10, DrainTimeout: 10 * time.Second,
			Next:      streamSource("s1", "t1", "s2", "u1"),
			Confirmed: func(tag string) { confirmed = append(confirmed, tag) }})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(p.published(), "publish u1") {
		if time.Now().After(deadline) {
			t.Fatalf("u1 was not published: %q", p.published())
		}
		runtime.Gosched()
	}
	cancel()
	s1.settle(true)
	err := <-done
	if got := p.published(); err != nil || got != "publish s1, publish t1, publish u1, settle s1" || strings.Join(confirmed, ",") != "s1,t1" {
		t.Fatalf("Pipeline = %v, log %q, confirmed %v; want nil, s2 never published, s1 and t1 confirmed", err, got, confirmed)
	}
}

// BenchmarkPipeline measures Pipeline's own cost per message, against a
// publisher that confirms at once: with every message in a stream of its
// own among 10,000, and with no streams.
func BenchmarkPipeline(b *testing.B) {
	for _, streams := range []int{0, 10000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			names := make([]string, max(streams, 1))
			for i := range names {
				if streams > 0 {
					names[i] = "quiz-" + strconv.Itoa(i)
				}
			}
			sent := 0
			next := func(context.Context) ([]broker.Outgoing[int], error) {
				if sent >= b.N {
					return nil, io.EOF
				}
				out := make([]broker.Outgoing[int], min(256, b.N-sent))
				for i := range out {
					out[i] = broker.Outgoing[int]{Exchange: "x", RoutingKey: "t", Stream: names[(sent+i)%len(names)], Tag: sent + i}
				}
				sent += len(out)
				return out, nil
			}
			b.ReportAllocs()
			err := broker.Pipeline(context.Background(), instantPublisher{}, broker.PipelineConfig[int]{Window: 2000, Next: next, Confirmed: func(int) {}})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

// instantPublisher confirms every message as it is published.
type instantPublisher struct{}

func (instantPublisher) Publish(context.Context, string, string, broker.Message) (broker.Confirmation, error) {
	return ackedConfirm{}, nil
}
func (instantPublisher) Done() <-chan struct{} { return nil }
func (instantPublisher) Close() error          { return nil }

// TestPipelineDrainDeadlineCoversAReleasedMessage: a held message that was
// released and published before ctx ended is in flight like any other:
// when its confirm does not come within DrainTimeout, Pipeline returns,
// even when the deadline passed while the confirmer was elsewhere (here, in
// a slow Confirmed). The confirmer chooses among ready channels at random,
// so the run repeats.
func TestPipelineDrainDeadlineCoversAReleasedMessage(t *testing.T) {
	const drain = 20 * time.Millisecond
	for range 15 {
		p := &heldPublisher{done: make(chan struct{})}
		a1 := &heldConfirm{p: p, id: "a1", done: make(chan struct{})}
		x1 := &heldConfirm{p: p, id: "x1", done: make(chan struct{})}
		a2 := &heldConfirm{p: p, id: "a2", done: make(chan struct{})} // never confirmed
		p.held = map[string]*heldConfirm{"a1": a1, "x1": x1, "a2": a2}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- broker.Pipeline(ctx, p, broker.PipelineConfig[string]{Window: 10, DrainTimeout: drain,
				Next: streamSource("a1", "x1", "a2"),
				Confirmed: func(tag string) {
					if tag == "x1" {
						time.Sleep(5 * drain) // a slow caller: the deadline passes meanwhile
					}
				}})
		}()
		waitLog := func(suffix string) {
			deadline := time.Now().Add(10 * time.Second)
			for !strings.HasSuffix(p.published(), suffix) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q: %q", suffix, p.published())
				}
				runtime.Gosched()
			}
		}
		waitLog("publish x1")
		a1.settle(true) // releases a2
		waitLog("publish a2")
		cancel() // the confirmer waits for x1 and starts the drain
		x1.settle(true)
		select {
		case err := <-done:
			if err == nil || !errors.Is(err, context.Canceled) {
				t.Fatalf("Pipeline = %v, want the drain's deadline: a2 was never confirmed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Pipeline still waits for a2's confirm long after DrainTimeout")
		}
	}
}
