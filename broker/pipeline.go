package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// It returns nil when Next returns io.EOF and every message is confirmed, or
// when ctx ends and the messages in flight were confirmed within
// DrainTimeout. A negative confirm returns an error wrapping ErrNacked; a
// publisher that fails, one wrapping ErrClosed.
func Pipeline[T any](ctx context.Context, pub Publisher, cfg PipelineConfig[T]) error {
	type pending struct {
		tag     T
		confirm Confirmation
	}
	queue := make(chan pending, max(cfg.Window, 1))
	readErr := make(chan error, 1)
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
	go func() {
		defer close(queue)
		readErr <- func() error {
			ctx := sendCtx
			for {
				batch, err := cfg.Next(ctx)
				if err != nil {
					return err
				}
				for _, o := range batch {
					var confirm Confirmation = skipped{}
					if !o.Skip {
						var err error
						confirm, err = pub.Publish(ctx, o.Exchange, o.RoutingKey, o.Message)
						if err != nil {
							return fmt.Errorf("publish to %q with key %.64q: %w", o.Exchange, o.RoutingKey, err)
						}
					}
					select {
					case queue <- pending{tag: o.Tag, confirm: confirm}:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
		}()
	}()

	// Once ctx ends, the messages in flight get DrainTimeout to be
	// confirmed. stopped is ctx's channel until then, nil after.
	var drainDeadline <-chan time.Time
	stopped := ctx.Done()
	startDrain := func() {
		timer := time.NewTimer(cfg.DrainTimeout)
		drainDeadline, stopped = timer.C, nil
	}
	for p := range queue {
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
