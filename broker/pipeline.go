package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Outgoing is one message for Pipeline. Tag is the caller's: it comes back
// through PipelineConfig.Confirmed once the broker has acked the message.
type Outgoing[T any] struct {
	Exchange   string
	RoutingKey string
	Message    Message
	Tag        T
	// Skip, when set, publishes nothing: the tag comes back through
	// Confirmed in its place in the order, once every message before it is
	// confirmed. The relay skips parked events this way, so that its
	// checkpoint moves past them.
	Skip bool
	// Stream, when not empty, names the ordered stream the message belongs
	// to. Pipeline never has two messages of one Stream in flight: it
	// publishes a message only once the broker has acked the one before
	// it of its Stream, and holds back the messages behind it meanwhile.
	// A broker may nack a message and ack a later one of the same channel
	// (RabbitMQ does while a quorum queue it routes to has no leader, and
	// when a queue that rejects publishes while full has room again); had
	// the later one of the stream been in flight, it would reach the
	// consumers before the earlier one, sent again.
	Stream string
}

// skipped is the confirmation of a skipped message: settled, positive.
type skipped struct{}

var settledChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (skipped) Done() <-chan struct{} { return settledChan }
func (skipped) Acked() bool           { return true }

// PipelineConfig configures Pipeline.
type PipelineConfig[T any] struct {
	// Window is how many messages may await their confirm at once.
	Window int
	// Next returns the next messages to publish. It may block until there
	// are some. It returns io.EOF when there are no more.
	Next func(ctx context.Context) ([]Outgoing[T], error)
	// Confirmed is called with the tag of each message the broker acked,
	// in publish order, from one goroutine.
	Confirmed func(T)
	// DrainTimeout bounds how long Pipeline waits, once ctx has ended, for
	// the confirms of messages already published. Zero waits not at all.
	DrainTimeout time.Duration
}

// Pipeline publishes what cfg.Next returns through pub, keeping up to
// cfg.Window messages in flight rather than waiting a round trip for each,
// and reports confirmed messages in order. Because confirms settle in order,
// a caller that records the last confirmed tag never records past a message
// the broker did not take.
//
// Messages of one Outgoing.Stream are in flight one at a time. A message
// whose stream has one in flight is held, and the messages of other
// streams after it go on meanwhile; it is published once the one before it
// is acked. A stream with many messages in a row thus goes at one message
// per confirm round trip, while many streams share the window. Confirmed
// still reports every tag in the order Next returned it.
//
// It returns nil when Next returns io.EOF and every message is confirmed, or
// when ctx ends and the messages in flight were confirmed within
// DrainTimeout, up to the first held message: that one is never published,
// and the tags from it on are not reported. A negative confirm returns an
// error wrapping ErrNacked; a publisher that fails, one wrapping ErrClosed.
func Pipeline[T any](ctx context.Context, pub Publisher, cfg PipelineConfig[T]) error {
	queue := make(chan *pending[T], max(cfg.Window, 1))
	readErr := make(chan error, 1)
	exited := make(chan struct{}) // closed when the sender has returned
	// The sender stops with ctx, or when the confirmer below gives up; the
	// confirmer outlives it long enough to drain.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	// abandon stops the sender, for an early return. It waits a moment for
	// the sender to notice; a sender stuck in Publish ends once the caller
	// closes the publisher, and the queue is drained meanwhile.
	abandon := func() {
		stopSending()
		go func() {
			for range queue {
			}
		}()
		select {
		case <-readErr:
		case <-time.After(time.Second):
		}
	}
	snd := &sender[T]{pub: pub, next: cfg.Next, window: max(cfg.Window, 1), queue: queue,
		busy: map[string]*pending[T]{}, waiting: map[string][]*pending[T]{}, wake: make(chan struct{}, 1)}
	go func() {
		defer close(exited)
		defer close(queue)
		readErr <- snd.run(sendCtx)
	}()

	// Once ctx ends, the messages in flight get DrainTimeout to be
	// confirmed. stopped is ctx's channel until then, nil after.
	var drainDeadline <-chan time.Time
	stopped := ctx.Done()
	startDrain := func() {
		timer := time.NewTimer(cfg.DrainTimeout)
		drainDeadline, stopped = timer.C, nil
	}
confirm:
	for p := range queue {
		// A held message: wait until the sender publishes it. If the
		// sender stopped first, nothing from here on can be reported.
		for held := p.published; held != nil; {
			select {
			case <-held:
				held = nil
			case <-exited:
				if !isClosed(held) {
					break confirm
				}
				held = nil
			case <-stopped:
				startDrain()
			case <-drainDeadline:
				if isClosed(exited) && !isClosed(held) {
					break confirm // never published: see above
				}
				abandon()
				return fmt.Errorf("stopped before the broker confirmed every message: %w", ctx.Err())
			}
		}
		for settled := false; !settled; {
			select {
			case <-p.confirm.Done():
				settled = true
			case <-stopped:
				startDrain()
			case <-drainDeadline:
				abandon()
				return fmt.Errorf("stopped before the broker confirmed every message: %w", ctx.Err())
			case <-pub.Done():
				// The publisher failed; its pending confirms settle as
				// not acked.
				<-p.confirm.Done()
				settled = true
			}
		}
		if !p.confirm.Acked() {
			abandon()
			select {
			case <-pub.Done():
				if es, ok := pub.(ErrSource); ok {
					if cause := es.Err(); cause != nil {
						return fmt.Errorf("publisher failed before the broker confirmed: %w", cause)
					}
				}
				return fmt.Errorf("publisher failed before the broker confirmed: %w", ErrClosed)
			default:
				return fmt.Errorf("negative confirm: %w", ErrNacked)
			}
		}
		if p.notify.Load() {
			snd.settled(p.stream)
		}
		cfg.Confirmed(p.tag)
	}
	err := <-readErr
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case ctx.Err() != nil:
		return nil // stopped, and drained in time
	}
	return err
}

// pending is a message on its way through Pipeline, in Next's order.
type pending[T any] struct {
	tag    T
	stream string
	// published is closed once confirm is set, for a message held behind
	// an earlier one of its stream; it is nil for one published at once.
	published chan struct{}
	confirm   Confirmation
	// msg is a held message, until the sender publishes it.
	msg *Outgoing[T]
	// notify asks the confirmer to tell the sender when this message is
	// acked: the next message of its stream is held until then.
	notify atomic.Bool
}

// sender publishes for Pipeline on one goroutine; Next runs on another, so
// that held messages go out as soon as their turn comes, even while Next
// waits for more.
type sender[T any] struct {
	pub    Publisher
	next   func(context.Context) ([]Outgoing[T], error)
	window int
	queue  chan<- *pending[T]
	// busy is the last message published of each stream, while it may be
	// unconfirmed; waiting holds the messages behind it, in order.
	busy    map[string]*pending[T]
	waiting map[string][]*pending[T]
	held    int

	mu    sync.Mutex
	acked []string      // streams whose busy message the confirmer reports acked
	wake  chan struct{} // cap 1: acked grew
}

// settled is the confirmer telling the sender that the busy message of
// stream was acked.
func (s *sender[T]) settled(stream string) {
	s.mu.Lock()
	s.acked = append(s.acked, stream)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

type batch[T any] struct {
	out []Outgoing[T]
	err error
}

// run publishes until ctx ends or a publish fails, or until Next returns
// an error (io.EOF at the end) and no message is held any more.
func (s *sender[T]) run(ctx context.Context) error {
	requests := make(chan struct{}, 1)
	batches := make(chan batch[T])
	nextCtx, stopNext := context.WithCancel(ctx)
	nextDone := make(chan struct{})
	go func() {
		defer close(nextDone)
		for {
			select {
			case <-requests:
			case <-nextCtx.Done():
				return
			}
			out, err := s.next(nextCtx)
			select {
			case batches <- batch[T]{out, err}:
			case <-nextCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		stopNext()
		<-nextDone
	}()

	var todo []Outgoing[T]
	var next *pending[T] // prepared, not yet in the queue
	requested := false
	// end is Next's error, io.EOF at the end: returned once every message
	// handed over is published, held ones too.
	var end error
	for {
		if next == nil && len(todo) > 0 {
			p, err := s.prepare(ctx, todo[0])
			if err != nil {
				return err
			}
			todo = todo[1:]
			select {
			case s.queue <- p: // the window has room: the usual case
				continue
			default:
				next = p
			}
		}
		if next == nil && !requested && end == nil {
			requests <- struct{}{}
			requested = true
		}
		if next == nil && end != nil && s.held == 0 {
			return end
		}
		var push chan<- *pending[T]
		if next != nil {
			push = s.queue
		}
		var in <-chan batch[T]
		if requested {
			in = batches
		}
		select {
		case push <- next:
			next = nil
		case b := <-in:
			requested = false
			if todo, end = b.out, b.err; end != nil {
				todo = nil
			}
		case <-s.wake:
			if err := s.release(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// prepare publishes o, or holds it behind the message of its stream in
// flight.
func (s *sender[T]) prepare(ctx context.Context, o Outgoing[T]) (*pending[T], error) {
	p := &pending[T]{tag: o.Tag, stream: o.Stream}
	if o.Skip {
		p.confirm = skipped{}
		return p, nil
	}
	if last, ok := s.busy[o.Stream]; ok && len(s.waiting[o.Stream]) > 0 {
		s.hold(p, o)
		return p, nil
	} else if ok && !isAcked(last) {
		// Ask first, then look again: the confirmer looks at notify
		// after the confirm, so one of the two sees the other.
		last.notify.Store(true)
		if !isAcked(last) {
			s.hold(p, o)
			return p, nil
		}
	}
	return p, s.publish(ctx, p, o)
}

func (s *sender[T]) hold(p *pending[T], o Outgoing[T]) {
	p.published, p.msg = make(chan struct{}), &o
	s.waiting[o.Stream] = append(s.waiting[o.Stream], p)
	s.held++
}

// release publishes the next held message of each stream whose message in
// flight the confirmer reported acked.
func (s *sender[T]) release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // stopping: publish nothing more
	}
	s.mu.Lock()
	acked := s.acked
	s.acked = nil
	s.mu.Unlock()
	for _, stream := range acked {
		w := s.waiting[stream]
		if len(w) == 0 || !isAcked(s.busy[stream]) {
			continue // already released
		}
		p := w[0]
		if len(w) == 1 {
			delete(s.waiting, stream)
		} else {
			s.waiting[stream] = w[1:]
			p.notify.Store(true)
		}
		s.held--
		o := *p.msg
		p.msg = nil
		if err := s.publish(ctx, p, o); err != nil {
			return err
		}
		close(p.published)
	}
	return nil
}

func (s *sender[T]) publish(ctx context.Context, p *pending[T], o Outgoing[T]) error {
	c, err := s.pub.Publish(ctx, o.Exchange, o.RoutingKey, o.Message)
	if err != nil {
		return fmt.Errorf("publish to %q with key %.64q: %w", o.Exchange, o.RoutingKey, err)
	}
	p.confirm = c
	if o.Stream != "" {
		if len(s.busy) >= 2*s.window {
			s.sweep()
		}
		s.busy[o.Stream] = p
	}
	return nil
}

// sweep forgets the streams whose last message is acked and that hold
// none, so that busy stays in proportion to the window.
func (s *sender[T]) sweep() {
	for stream, p := range s.busy {
		if len(s.waiting[stream]) == 0 && isAcked(p) {
			delete(s.busy, stream)
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// isAcked reports whether p's confirm has come, positive.
func isAcked[T any](p *pending[T]) bool { return isClosed(p.confirm.Done()) && p.confirm.Acked() }
