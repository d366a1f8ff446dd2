// Package replay sends stored events to the broker again: through the topic
// exchange to every consumer, or to one consumer group's queue only.
//
// A replay selects events with a store.Filter, reads them in commit order up
// to the newest event at its start, and publishes them with publisher
// confirms and a window of messages in flight, as the relay does. Each
// message carries the header x-eventbus-replay with the replay's ID, so that
// consumers and operators can tell a replay from live traffic. Consumers
// with an inbox ignore events they already handled.
//
// A replay that stops early reports the cursor to resume from; passing it
// back as Filter.After goes on where it stopped, without gaps.
//
// It sits beside the relay, between a store.Store and a broker.Broker, and
// needs neither the relay nor the consumer runtime: `eventbus replay` calls
// it directly, and `eventbus serve` through POST /v1/replay.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// ErrBadTarget reports a target a replay must not publish to. Run wraps
// it with the reason.
var ErrBadTarget = errors.New("replay: bad target")

// Target says where replayed events go. Set exactly one field.
type Target struct {
	// Exchange publishes to the topic exchange, the event type as routing
	// key: every queue bound to the type receives the event.
	Exchange string
	// Queue publishes to this one queue, through the default exchange:
	// a consumer group's queue, or one shard's. The messages go there
	// alone, so they carry no routing key for buckets (see
	// broker.PublisherOptions.QueueOnly), and Run refuses a retry queue
	// (named "<group>.retry.<n>"): its events would come back late, and to
	// a sharded group without their shard.
	Queue string
}

func (t Target) route(env event.Envelope) (exchange, key string) {
	if t.Queue != "" {
		return broker.NamelessExchange, t.Queue
	}
	return t.Exchange, env.Type
}

// retrySuffix precedes the number of a retry queue: consume.RetryQueue
// names them, and replay does not import the consumer runtime.
const retrySuffix = ".retry."

// retryGroup returns the group whose retry queue q is named as, and
// whether it is one.
func retryGroup(q string) (string, bool) {
	i := strings.LastIndex(q, retrySuffix)
	if i <= 0 {
		return "", false
	}
	n := q[i+len(retrySuffix):]
	return q[:i], n != "" && strings.Trim(n, "0123456789") == ""
}

// Selective reports whether f selects fewer than every stored event; see
// store.Filter.Selective.
func Selective(f store.Filter) bool { return f.Selective() }

// Options configures a replay.
type Options struct {
	// Filter selects the events. Filter.After resumes after a cursor;
	// Filter.Limit is the batch size read at a time (default 1000).
	Filter store.Filter
	Target Target
	// Rate limits the replay to this many events a second; 0 is as fast as
	// the broker confirms.
	Rate float64
	// Window is how many messages may await their confirm. Default 2000.
	Window int
	// ID identifies the replay in the x-eventbus-replay header. Default: a
	// new UUIDv7.
	ID string
	// Progress, if set, is called as events are confirmed, at most every
	// 100 ms and once at the end.
	Progress func(Progress)
}

// Progress reports how far a replay is.
type Progress struct {
	Published int64
	Total     int64
	// Resume is the cursor after the last confirmed event.
	Resume store.Cursor
}

// Result is the outcome of a replay.
type Result struct {
	ID        string
	Published int64
	Total     int64
	// Resume is the cursor after the last event the broker confirmed. When
	// the replay stopped early, pass it as Filter.After to go on.
	Resume store.Cursor
	// Complete is true when every selected event was published.
	Complete bool
}

// Plan returns how many events a replay with f would publish, and up to
// sample of the first of them. It publishes nothing: it is --dry-run.
func Plan(ctx context.Context, s store.Reader, f store.Filter, sample int) (int64, []event.Envelope, error) {
	total, err := s.Count(ctx, f)
	if err != nil {
		return 0, nil, fmt.Errorf("replay: count: %w", err)
	}
	if sample <= 0 || total == 0 {
		return total, nil, nil
	}
	f.Limit = sample
	page, err := s.Read(ctx, f)
	if err != nil {
		return 0, nil, fmt.Errorf("replay: sample: %w", err)
	}
	return total, page.Events, nil
}

// Run replays the events opts selects, from the oldest to the newest that
// was visible when it started. It returns when all are published and
// confirmed, when ctx ends, or on a failure; in the last two cases the result
// says where to resume, and the error says why it stopped.
func Run(ctx context.Context, s store.Store, b broker.Broker, opts Options) (Result, error) {
	if (opts.Target.Exchange == "") == (opts.Target.Queue == "") {
		return Result{}, fmt.Errorf("%w: set exactly one target: an exchange or a queue", ErrBadTarget)
	}
	if group, ok := retryGroup(opts.Target.Queue); ok {
		return Result{}, fmt.Errorf("%w: queue %q is a retry queue: replay to its group's queue, or to a sharded group's shard exchange %q",
			ErrBadTarget, opts.Target.Queue, group+".shards")
	}
	if opts.ID == "" {
		opts.ID = uuid.Must(uuid.NewV7()).String()
	}
	if opts.Window <= 0 {
		opts.Window = 2000
	}
	if opts.Filter.Limit <= 0 {
		opts.Filter.Limit = 1000
	}
	res := Result{ID: opts.ID, Resume: opts.Filter.After}

	// The newest event now bounds the replay, so that it ends under live
	// traffic; events that commit later have later cursors.
	stats, err := s.Stats(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	head := stats.Head
	if res.Total, err = s.Count(ctx, opts.Filter); err != nil {
		return res, fmt.Errorf("replay: count: %w", err)
	}
	if opts.Target.Queue != "" {
		if _, err := b.InspectQueue(ctx, opts.Target.Queue); err != nil {
			if errors.Is(err, broker.ErrNotFound) {
				// consume.ShardExchange names it; replay cannot import consume.
				return res, fmt.Errorf("replay: target queue %q: %w (a consumer group with shards has no queue of its name: "+
					"replay to its shard exchange %q instead, which puts each event in its stream's shard)",
					opts.Target.Queue, err, opts.Target.Queue+".shards")
			}
			return res, fmt.Errorf("replay: target queue %q: %w", opts.Target.Queue, err)
		}
	} else if err := b.DeclareExchange(ctx, opts.Target.Exchange); err != nil {
		return res, fmt.Errorf("replay: target exchange %q: %w", opts.Target.Exchange, err)
	}
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{QueueOnly: opts.Target.Queue != ""})
	if err != nil {
		return res, fmt.Errorf("replay: open publisher: %w", err)
	}
	defer pub.Close()

	var limiter *rate.Limiter
	batch := opts.Filter.Limit
	if opts.Rate > 0 {
		// Small batches keep a limited replay smooth.
		batch = max(1, min(batch, int(opts.Rate/10)))
		limiter = rate.NewLimiter(rate.Limit(opts.Rate), batch)
	}

	cursor := opts.Filter.After
	next := func(ctx context.Context) ([]broker.Outgoing[store.Cursor], error) {
		if head.IsZero() || !cursor.Less(head) {
			return nil, io.EOF
		}
		f := opts.Filter
		f.After, f.Limit = cursor, batch
		page, err := s.Read(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("read the store: %w", err)
		}
		out := make([]broker.Outgoing[store.Cursor], 0, len(page.Events))
		for _, env := range page.Events {
			c := store.CursorOf(env)
			if head.Less(c) {
				break
			}
			msg, err := broker.EnvelopeMessage(env)
			if err != nil {
				return nil, err
			}
			msg.Headers[broker.HeaderReplay] = opts.ID
			exchange, key := opts.Target.route(env)
			out = append(out, broker.Outgoing[store.Cursor]{Exchange: exchange, RoutingKey: key, Message: msg, Stream: env.Subject, Tag: c})
		}
		if len(out) == 0 {
			return nil, io.EOF
		}
		cursor = page.Next
		if limiter != nil {
			if err := limiter.WaitN(ctx, len(out)); err != nil {
				// The limiter refuses a wait that would outlast ctx's
				// deadline; the replay stops at the deadline either way.
				<-ctx.Done()
				return nil, ctx.Err()
			}
		}
		return out, nil
	}

	var lastReport time.Time
	report := func(force bool) {
		if opts.Progress != nil && (force || time.Since(lastReport) >= 100*time.Millisecond) {
			lastReport = time.Now()
			opts.Progress(Progress{Published: res.Published, Total: res.Total, Resume: res.Resume})
		}
	}
	err = broker.Pipeline(ctx, pub, broker.PipelineConfig[store.Cursor]{
		Window:       opts.Window,
		Next:         next,
		DrainTimeout: 5 * time.Second,
		Confirmed: func(c store.Cursor) {
			res.Published++
			res.Resume = c
			report(false)
		},
	})
	report(true)
	switch {
	case err != nil:
		return res, fmt.Errorf("replay %s stopped after %d of %d events: %w", res.ID, res.Published, res.Total, err)
	case ctx.Err() != nil:
		return res, fmt.Errorf("replay %s stopped after %d of %d events: %w", res.ID, res.Published, res.Total, ctx.Err())
	}
	res.Complete = true
	return res, nil
}
