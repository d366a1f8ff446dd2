package bench

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edupulse/eventbus/broker"
)

// sinkWorkers is how many goroutines take the sink's deliveries.
const (
	sinkWorkers  = 4
	sinkPrefetch = 2000
)

// sink is the consumer at the end of the pipeline: a queue bound to every
// event type on the bench exchange, whose messages it counts and acks. It
// tells the events of each scenario apart by their source.
type sink struct {
	sub  broker.Subscription
	wg   sync.WaitGroup
	mu   sync.RWMutex
	tall map[string]*tally
}

// tally is what the sink received of one scenario.
type tally struct {
	received atomic.Int64
	last     atomic.Int64 // when the last one arrived, Unix ns
	// latency, when set, receives each event's time from its dispatch (its
	// occurred-at time, which the scenario sets to when Dispatch began) to
	// its arrival.
	latency *histogram
}

func startSink(ctx context.Context, b broker.Broker, exchange, queue string) (*sink, error) {
	if err := b.DeclareExchange(ctx, exchange); err != nil {
		return nil, fmt.Errorf("bench: declare exchange %s: %w", exchange, err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: queue, Bindings: []broker.Binding{{Exchange: exchange, Pattern: "#"}}}); err != nil {
		return nil, fmt.Errorf("bench: declare queue %s: %w", queue, err)
	}
	sub, err := b.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: sinkPrefetch, Tag: "eventbus-bench"})
	if err != nil {
		return nil, fmt.Errorf("bench: consume %s: %w", queue, err)
	}
	s := &sink{sub: sub, tall: map[string]*tally{}}
	for range sinkWorkers {
		s.wg.Go(s.work)
	}
	return s, nil
}

func (s *sink) work() {
	for d := range s.sub.Deliveries() {
		now := time.Now()
		s.mu.RLock()
		t := s.tall[d.AppID]
		s.mu.RUnlock()
		if t != nil {
			if t.latency != nil {
				if at, ok := occurredAt(d.Body); ok {
					t.latency.record(now.Sub(at))
				}
			}
			t.received.Add(1)
			t.last.Store(now.UnixNano())
		}
		_ = d.Ack()
	}
}

// track starts counting the events of source; latency, if set, receives
// their end-to-end latencies.
func (s *sink) track(source string, latency *histogram) *tally {
	t := &tally{latency: latency}
	s.mu.Lock()
	s.tall[source] = t
	s.mu.Unlock()
	return t
}

func (s *sink) stop() {
	_ = s.sub.Close()
	s.wg.Wait()
}

var timeAttr = []byte(`"time":"`)

// occurredAt finds the CloudEvents time attribute in an envelope's JSON
// without decoding all of it: the sink must not be what limits a run.
func occurredAt(body []byte) (time.Time, bool) {
	i := bytes.Index(body, timeAttr)
	if i < 0 {
		return time.Time{}, false
	}
	rest := body[i+len(timeAttr):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

// drain waits until the sink has received want events of t, for up to
// timeout.
func (r *runner) drain(ctx context.Context, t *tally, want int64) error {
	err := waitFor(ctx, r.opts.DrainTimeout, func() bool { return t.received.Load() >= want })
	if err != nil {
		return fmt.Errorf("the consumer received %d of the %d events recorded (relay or consumer behind): %w",
			t.received.Load(), want, err)
	}
	return nil
}
