package bench

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/backoff"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
)

// streams is how many streams the scenarios spread their events over:
// quiz-0 … quiz-9999, as many independent producers would.
const streams = 10000

// streamBacklog is how many events e2e-stream's caller records ahead of
// the consumer at most.
const streamBacklog = 500

func source(scenario string) string { return sourcePrefix + "/" + scenario }

// learners are the learners the scenarios' quizzes are of: a learner
// submits many quizzes, as in a school. Each learner is a data subject
// with a key of their own (erasure): a new learner per event would
// measure the creation of a key per event.
var learners = func() []uuid.UUID {
	out := make([]uuid.UUID, 1000)
	for i := range out {
		out[i] = uuid.New()
	}
	return out
}()

func learnerOf(n int64) uuid.UUID { return learners[n%int64(len(learners))] }

// draft returns a quiz.submitted event of source, in the next stream, that
// occurred at at: the sink measures end-to-end latency from it.
func (r *runner) draft(src string, at time.Time) (event.Draft, error) {
	return r.draftIn(src, at, "")
}

// draftIn is draft in the stream subject; "" is the next stream.
func (r *runner) draftIn(src string, at time.Time, subject string) (event.Draft, error) {
	n := r.seq.Add(1)
	if subject == "" {
		subject = "quiz-" + strconv.FormatInt(n%streams, 10)
	}
	return eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learnerOf(n), ScoreRaw: int32(n % 100)},
		eventbus.Subject(subject), eventbus.OccurredAt(at), eventbus.Source(src))
}

// limits returns how long a scenario records events, and how many it
// records at most.
func (r *runner) limits() (time.Duration, int64) {
	limit := r.opts.Events
	if limit == 0 {
		limit = math.MaxInt64
	}
	return r.opts.Duration, limit
}

// callers runs call on n goroutines until d has passed (when set), limit
// events are recorded, ctx ends or a call fails. Each call records per
// events. It returns how many events were recorded and when the last call
// returned.
func callers(parent context.Context, n, per int, d time.Duration, limit int64, call func(ctx context.Context) error) (int64, time.Time, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	var (
		taken, done atomic.Int64
		last        atomic.Int64
		wg          sync.WaitGroup
		once        sync.Once
		ferr        error
	)
	last.Store(time.Now().UnixNano())
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				if !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				if taken.Add(int64(per)) > limit {
					return
				}
				if err := call(ctx); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { ferr = err; cancel() })
					}
					return
				}
				done.Add(int64(per))
				last.Store(time.Now().UnixNano())
			}
		})
	}
	wg.Wait()
	if ferr == nil {
		ferr = parent.Err()
	}
	return done.Load(), time.Unix(0, last.Load()), ferr
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func (r *runner) dispatchLatency(ctx context.Context) (Result, error) {
	src := source(DispatchLatency)
	t := r.sink.track(src, nil)
	h := &histogram{}
	d, limit := r.limits()
	start := time.Now()
	n, last, err := callers(ctx, 1, 1, d, limit, func(ctx context.Context) error {
		t0 := time.Now()
		draft, err := r.draft(src, t0)
		if err != nil {
			return err
		}
		if _, err := r.svc.Bus.Append(ctx, []event.Draft{draft}); err != nil {
			return err
		}
		h.record(time.Since(t0))
		return nil
	})
	res := Result{What: "Dispatch of one event in a transaction of the bus's own, one caller; latency of the call, commit included",
		Events: n, Seconds: last.Sub(start).Seconds(), PerSecond: rate(n, last.Sub(start)), Latency: latencyOf(h)}
	if err != nil {
		return res, err
	}
	return res, r.drain(ctx, t, n)
}

// endToEnd dispatches from n callers, per events per transaction, and
// measures until the consumer has received them all.
func (r *runner) endToEnd(ctx context.Context, name string, n, per int) (Result, error) {
	src := source(name)
	h := &histogram{}
	t := r.sink.track(src, h)
	d, limit := r.limits()
	// e2e-stream records every event in one stream of its own.
	subject, spread := "", fmt.Sprintf("%d streams", streams)
	if name == E2EStream {
		subject = "bulk-" + uuid.NewString()
		spread = fmt.Sprintf("all in one stream, recorded at most %d events ahead of the consumer", streamBacklog)
	}
	var recorded atomic.Int64
	start := time.Now()
	count, _, err := callers(ctx, n, per, d, limit, func(ctx context.Context) error {
		if name == E2EStream {
			// One stream is delivered at one event per confirm round trip,
			// a tenth of what one caller records: unchecked, a caller
			// records in 10 s what takes minutes to deliver, past the
			// drain's bound. It keeps at most streamBacklog events ahead
			// of the consumer, enough that the relay always has the
			// stream's next event.
			err := waitFor(ctx, r.opts.DrainTimeout, func() bool { return recorded.Load()-t.received.Load() < streamBacklog })
			if err != nil {
				return fmt.Errorf("the consumer stayed %d events behind the stream: %w", recorded.Load()-t.received.Load(), err)
			}
		}
		t0 := time.Now()
		drafts := make([]event.Draft, per)
		for i := range drafts {
			var err error
			if drafts[i], err = r.draftIn(src, t0, subject); err != nil {
				return err
			}
		}
		if _, err := r.svc.Bus.Append(ctx, drafts); err != nil {
			return err
		}
		recorded.Add(int64(per))
		return nil
	})
	who := fmt.Sprintf("%d callers", n)
	if n == 1 {
		who = "one caller"
	}
	res := Result{What: fmt.Sprintf("%s, %d event(s) per transaction, %s; from the first Dispatch to the consumer's receipt of the last event; latency from Dispatch to receipt",
		who, per, spread), Events: count}
	if err != nil {
		return res, err
	}
	err = r.drain(ctx, t, count)
	elapsed := time.Unix(0, t.last.Load()).Sub(start)
	res.Seconds, res.PerSecond, res.Latency = elapsed.Seconds(), rate(count, elapsed), latencyOf(h)
	return res, err
}

// relayLag dispatches at a steady rate, RelayLagBatch events per
// transaction, and records the relay's lag from each event's recording to
// the broker's confirm.
func (r *runner) relayLag(ctx context.Context) (Result, error) {
	src := source(RelayLag)
	t := r.sink.track(src, nil)
	perSec, per := r.opts.RelayLagRate, r.opts.RelayLagBatch
	total := int64(float64(perSec) * r.opts.RelayLagDuration.Seconds())
	if r.opts.Events > 0 && (total == 0 || r.opts.Events < total) {
		total = r.opts.Events
	}
	interval := time.Second / time.Duration(perSec)
	h := &histogram{}
	r.lag.Store(h)
	defer r.lag.Store(nil)

	var next atomic.Int64
	start := time.Now()
	n, last, err := callers(ctx, r.opts.Callers, per, 0, total, func(ctx context.Context) error {
		// Transaction i is due at start + i × per × interval: callers
		// that fall behind catch up at once, so the rate holds on average.
		due := start.Add(time.Duration(next.Add(1)-1) * time.Duration(per) * interval)
		if wait := time.Until(due); wait > 0 && !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
		drafts := make([]event.Draft, per)
		for i := range drafts {
			var err error
			if drafts[i], err = r.draft(src, time.Now()); err != nil {
				return err
			}
		}
		_, err := r.svc.Bus.Append(ctx, drafts)
		return err
	})
	res := Result{What: fmt.Sprintf("a steady %s events/s from %d callers, %s per transaction; latency is the relay's lag from an event's recording to the broker's confirm",
		group(float64(perSec)), r.opts.Callers, eventsPer(per)), Events: n, Seconds: last.Sub(start).Seconds(), PerSecond: rate(n, last.Sub(start))}
	if err != nil {
		return res, err
	}
	err = r.drain(ctx, t, n)
	if err == nil {
		// The consumer can receive an event before the relay has handled
		// its confirm and recorded its lag.
		err = waitFor(ctx, r.opts.DrainTimeout, func() bool { return h.count() >= n })
		if err != nil {
			err = fmt.Errorf("the relay recorded the lag of %d of the %d events delivered: %w", h.count(), n, err)
		}
	}
	r.lag.Store(nil)
	res.Latency = latencyOf(h)
	return res, err
}

// eventsPer says how many events one transaction records.
func eventsPer(n int) string {
	if n == 1 {
		return "one event"
	}
	return fmt.Sprintf("%d events", n)
}

// httpPublish posts one event per request from the callers.
func (r *runner) httpPublish(ctx context.Context) (Result, error) {
	src := source(HTTP16)
	t := r.sink.track(src, nil)
	h := &histogram{}
	transport := &http.Transport{MaxIdleConnsPerHost: r.opts.Callers, MaxConnsPerHost: r.opts.Callers}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	url := "http://" + r.httpAddr + "/v1/events"
	d, limit := r.limits()
	start := time.Now()
	n, last, err := callers(ctx, r.opts.Callers, 1, d, limit, func(ctx context.Context) error {
		seq := r.seq.Add(1)
		body := fmt.Appendf(nil, `{"type":%q,"subject":"quiz-%d","source":%q,"data":{"quiz_id":%q,"learner_id":%q,"score_raw":%d}}`,
			edupulse.TypeQuizSubmitted, seq%streams, src, uuid.New(), learnerOf(seq), seq%100)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+r.env.token)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST /v1/events: status %d", resp.StatusCode)
		}
		h.record(time.Since(t0))
		return nil
	})
	res := Result{What: fmt.Sprintf("POST /v1/events, one event per request, %d clients over loopback with a token; latency of the request", r.opts.Callers),
		Events: n, Seconds: last.Sub(start).Seconds(), PerSecond: rate(n, last.Sub(start)), Latency: latencyOf(h)}
	if err != nil {
		return res, err
	}
	return res, r.drain(ctx, t, n)
}

// timedInbox times each inbox transaction: begin, the inbox record, the
// handler and the commit.
type timedInbox[TTx any] struct {
	store.Inbox[TTx]
	h *histogram
}

func (t timedInbox[TTx]) HandleOnce(ctx context.Context, group string, id uuid.UUID, fn func(ctx context.Context, tx TTx) error) (bool, error) {
	start := time.Now()
	handled, err := t.Inbox.HandleOnce(ctx, group, id, fn)
	if err == nil {
		t.h.record(time.Since(start))
	}
	return handled, err
}

// consumeAhead is how many messages the consume-inbox publisher keeps in
// the queue ahead of the consumer: enough that it never waits, few enough
// that an in-process queue does not weigh on the memory measured.
const consumeAhead = 4000

// consumeInbox runs a consumer group whose handler writes one row in the
// inbox transaction, while a publisher keeps its queue filled.
func (r *runner) consumeInbox(ctx context.Context, name string, concurrency int) (Result, error) {
	h := &histogram{}
	var (
		inbox consume.Inbox
		route consume.Route
	)
	const insert = `INSERT INTO ` + effectsTable + ` (event_id, subject, score) VALUES `
	if pg, ok := r.svc.Postgres(); ok {
		inbox = consume.NewInbox[pgx.Tx](timedInbox[pgx.Tx]{Inbox: pg, h: h})
		route = consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			_, err := tx.Exec(ctx, insert+`($1, $2, $3)`, env.ID.String(), env.Subject, q.ScoreRaw)
			return err
		})
	} else if lite, ok := r.svc.SQLite(); ok {
		inbox = consume.NewInbox[*sql.Tx](timedInbox[*sql.Tx]{Inbox: lite, h: h})
		route = consume.OnTx(func(ctx context.Context, tx *sql.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			_, err := tx.ExecContext(ctx, insert+`(?, ?, ?)`, env.ID.String(), env.Subject, q.ScoreRaw)
			return err
		})
	}
	group := r.env.queue(name)
	queues := []string{group, r.env.queue(name + ".dlq"), r.env.queue(name + ".retry.1")}
	defer func() {
		// Drop what is left in them now, not at the end of the run.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, q := range queues {
			_ = r.svc.Broker.DeleteQueue(dctx, q)
		}
	}()
	c, err := consume.New(r.svc.Broker, consume.Config{
		Group: group, Exchange: r.env.cfg.Exchange, Concurrency: concurrency, Inbox: inbox,
		MaxAttempts: 2, Logger: r.opts.Logger, ShutdownTimeout: 10 * time.Second,
	}, route)
	if err != nil {
		return Result{}, err
	}
	if err := c.Declare(ctx); err != nil {
		return Result{}, err
	}

	// The publisher keeps consumeAhead messages ahead of the consumer.
	d, limit := r.limits()
	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	pubErr := make(chan error, 1)
	var published atomic.Int64
	go func() { pubErr <- r.keepFilled(pubCtx, group, name, limit, &published, h) }()
	if err := waitFor(ctx, time.Minute, func() bool { return published.Load() >= min(consumeAhead, limit) }); err != nil {
		stopPublishing()
		return Result{}, errors.Join(fmt.Errorf("fill the queue: %w", err), <-pubErr)
	}

	runCtx, stopConsumer := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- c.Run(runCtx) }()
	var deadline time.Time
	if d > 0 {
		deadline = start.Add(d)
	}
	var failure error
	for h.count() < limit && (deadline.IsZero() || time.Now().Before(deadline)) {
		if st := c.Stats(); st.Failed > 0 {
			failure = fmt.Errorf("%d handler calls failed", st.Failed)
			break
		}
		if ctx.Err() != nil {
			failure = ctx.Err()
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	handled := h.count()
	elapsed := time.Since(start)
	stopPublishing()
	stopConsumer()
	failure = errors.Join(failure, <-runErr)
	if err := <-pubErr; err != nil && !errors.Is(err, context.Canceled) {
		failure = errors.Join(failure, err)
	}
	return Result{What: fmt.Sprintf("consumer group, %d handler(s), each event in an inbox transaction that writes one row; the queue is kept filled; latency of the inbox transaction",
		concurrency), Events: handled, Seconds: elapsed.Seconds(), PerSecond: rate(handled, elapsed), Latency: latencyOf(h)}, failure
}

// keepFilled publishes quiz.submitted events to queue, keeping consumeAhead
// of them ahead of the handled count, until ctx ends or limit are published.
func (r *runner) keepFilled(ctx context.Context, queue, name string, limit int64, published *atomic.Int64, handled *histogram) error {
	pub, err := r.svc.Broker.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		return err
	}
	defer pub.Close()
	src := source(name)
	return broker.Pipeline(ctx, pub, broker.PipelineConfig[struct{}]{
		Window: consumeAhead,
		Next: func(ctx context.Context) ([]broker.Outgoing[struct{}], error) {
			var room int64
			for {
				sent := published.Load()
				if sent >= limit {
					return nil, io.EOF
				}
				room = min(handled.count()+consumeAhead-sent, limit-sent, 500)
				if room > 0 {
					break
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
			out := make([]broker.Outgoing[struct{}], room)
			for i := range out {
				seq := r.seq.Add(1)
				data := fmt.Appendf(nil, `{"quiz_id":%q,"learner_id":%q,"score_raw":%d}`, uuid.New(), uuid.New(), seq%100)
				m, err := broker.EnvelopeMessage(event.Envelope{
					ID: uuid.Must(uuid.NewV7()), Type: edupulse.TypeQuizSubmitted, Source: src,
					Subject: "quiz-" + strconv.FormatInt(seq%streams, 10), StreamVersion: seq/streams + 1,
					OccurredAt: time.Now().UTC(), CorrelationID: uuid.Must(uuid.NewV7()), Position: seq, Data: data,
				})
				if err != nil {
					return nil, err
				}
				out[i] = broker.Outgoing[struct{}]{Exchange: broker.NamelessExchange, RoutingKey: queue, Message: m}
			}
			published.Add(room)
			return out, nil
		},
		Confirmed: func(struct{}) {},
	})
}

// replay replays the stored events to one queue of its own.
func (r *runner) replay(ctx context.Context) (Result, error) {
	d, limit := r.limits()
	want := r.opts.Events
	if want == 0 {
		want = r.opts.ReplayEvents
	}
	stats, err := r.svc.Store.Stats(ctx)
	if err != nil {
		return Result{}, err
	}
	if missing := want - stats.Events; missing > 0 {
		if err := r.seed(ctx, missing); err != nil {
			return Result{}, fmt.Errorf("store events to replay: %w", err)
		}
	}

	q := r.env.queue("replay")
	removeQueue, err := r.replayQueue(ctx, q)
	if err != nil {
		return Result{}, err
	}
	defer removeQueue()
	runtime.GC()
	debug.FreeOSMemory()
	r.measureFromHere(ctx)
	note := ""
	if r.env.cfg.InProcessBroker() {
		// In-process, a queue nobody takes from grows in this process's
		// memory: a worker takes the replayed events, as one would.
		stop, err := drainQueue(ctx, r.svc.Broker, q)
		if err != nil {
			return Result{}, err
		}
		defer stop()
		note = "a consumer takes the replayed events as they arrive"
	}

	// With a size, the replay takes the oldest events up to it: positions
	// follow one another, so a range of them selects that many.
	var f store.Filter
	if limit < math.MaxInt64 {
		first, err := r.svc.Store.Read(ctx, store.Filter{Limit: 1})
		if err != nil {
			return Result{}, err
		}
		if len(first.Events) > 0 {
			f.FromPosition = first.Events[0].Position
			f.ToPosition = f.FromPosition + limit - 1
		}
	}
	start := time.Now() // before the deadline is set, so that a timed replay lasts at least d
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, d)
		defer cancel()
	}
	// A replay timed by the duration replays the store again and again
	// until the time is up, so that its rate is a steady one over the whole
	// duration: one pass over a store of 50,000 events lasts about three
	// seconds on PostgreSQL + RabbitMQ, too short to average RabbitMQ's own
	// swings. A replay sized by --events is one pass.
	var (
		published, total int64
		passes           int
	)
	for {
		var res replay.Result
		res, err = replay.Run(runCtx, r.svc.Store, r.svc.Broker, replay.Options{Filter: f, Target: replay.Target{Queue: q}})
		// A pass the deadline cut before it counted the store reports none.
		published, total = published+res.Published, max(total, res.Total)
		if res.Published > 0 {
			passes++
		}
		if err != nil && runCtx.Err() != nil && ctx.Err() == nil {
			err = nil // stopped at its size or time, as asked
			break
		}
		if err != nil || d <= 0 || limit < math.MaxInt64 || res.Published == 0 {
			break
		}
	}
	elapsed := time.Since(start)
	what := fmt.Sprintf("replay.Run of the stored events (%s) to one queue, in commit order, with confirms", group(float64(total)))
	if passes > 1 {
		what += fmt.Sprintf("; %d passes over them in %s", passes, d)
	}
	return Result{What: what, Note: note, Events: published, Seconds: elapsed.Seconds(), PerSecond: rate(published, elapsed)}, err
}

// replayQueue declares replay's target queue q, and returns what removes it.
func (r *runner) replayQueue(ctx context.Context, q string) (remove func(), err error) {
	if err := r.svc.Broker.DeclareQueue(ctx, broker.QueueSpec{Name: q}); err != nil {
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = r.svc.Broker.DeleteQueue(dctx, q)
	}, nil
}

// replaySlice is one pass of replay to queue q, clocked as a ceiling is:
// from its first confirm, once it is set up, for d, or to the end of the
// pass if that comes first. A pass first counts the events it will replay,
// which over a store of 260,000 events takes PostgreSQL a quarter of a
// second: a replay pays that once per pass, not once per slice.
func (r *runner) replaySlice(ctx context.Context, d time.Duration, q string) (int64, time.Duration, error) {
	sliceCtx, stopSlice := context.WithCancel(ctx)
	defer stopSlice()
	var (
		start   time.Time
		atStart int64
		timer   *time.Timer
	)
	// Progress is called on replay.Run's own goroutine, first at the
	// first confirm.
	res, err := replay.Run(sliceCtx, r.svc.Store, r.svc.Broker, replay.Options{Target: replay.Target{Queue: q},
		Progress: func(p replay.Progress) {
			if start.IsZero() {
				start, atStart = time.Now(), p.Published
				timer = time.AfterFunc(d, stopSlice)
			}
		}})
	took := time.Since(start)
	if timer != nil {
		timer.Stop()
	}
	switch {
	case err != nil && (sliceCtx.Err() == nil || ctx.Err() != nil):
		return 0, 0, err // a failure, or the run's end: not the slice's
	case start.IsZero():
		return 0, 0, nil
	}
	return res.Published - atStart, took, nil
}

// besidePairs is how many pairs of slices replayBeside measures.
const besidePairs = 5

// replayBeside measures replay again in turns with the confirm ceiling
// (see Beside): besidePairs pairs of slices, each a fifth of the
// scenario's duration, each slice into a fresh queue, as the ceiling's
// own. It is nil for an in-process broker, whose cost does not drift with
// another process's, and for a replay sized by --events, which has no
// duration to slice.
func (r *runner) replayBeside(ctx context.Context) *Beside {
	d, limit := r.limits()
	if r.env.cfg.InProcessBroker() || limit < math.MaxInt64 || d <= 0 {
		return nil
	}
	slice := d / besidePairs
	progress(r.opts.Progress, "bench: replay in turns with %s, %d pairs of %s ...", CeilingConfirms, besidePairs, slice)
	bs := &Beside{Pairs: besidePairs, SliceSeconds: slice.Seconds()}
	ceiling := func(i int) (int64, time.Duration, error) {
		t := &timing{meter: r.meter, d: slice}
		var version string
		n, err := rabbitConfirms(ctx, r.env.cfg.AMQPURLs, fmt.Sprintf("%s.ceiling-beside-%d", r.env.prefix, i), t, &version)
		t.done(ctx)
		return n, t.elapsed, err
	}
	replaying := func(i int) (int64, time.Duration, error) {
		q := r.env.queue(fmt.Sprintf("replay-beside-%d", i))
		removeQueue, err := r.replayQueue(ctx, q)
		if err != nil {
			return 0, 0, err
		}
		defer removeQueue()
		return r.replaySlice(ctx, slice, q)
	}
	var n, ceilingN int64
	var took, ceilingTook time.Duration
	for i := range besidePairs {
		first, second := ceiling, replaying
		if i%2 == 1 {
			first, second = replaying, ceiling
		}
		var counts [2]int64
		var times [2]time.Duration
		for j, measure := range []func(int) (int64, time.Duration, error){first, second} {
			c, t, err := measure(i)
			if err == nil && (c <= 0 || t <= 0) {
				err = fmt.Errorf("nothing completed in %v", slice)
			}
			if err != nil {
				bs.Error = fmt.Sprintf("pair %d: %v", i+1, err)
				return bs
			}
			counts[j], times[j] = c, t
		}
		if i%2 == 1 {
			counts[0], counts[1], times[0], times[1] = counts[1], counts[0], times[1], times[0]
		}
		ceilingN, ceilingTook, n, took = ceilingN+counts[0], ceilingTook+times[0], n+counts[1], took+times[1]
		bs.PairRatios = append(bs.PairRatios, rate(counts[1], times[1])/rate(counts[0], times[0]))
	}
	bs.PerSecond, bs.CeilingPerSecond = rate(n, took), rate(ceilingN, ceilingTook)
	bs.Ratio = bs.PerSecond / bs.CeilingPerSecond
	progress(r.opts.Progress, "bench: replay in turns with %s: %.0f%%", CeilingConfirms, 100*bs.Ratio)
	return bs
}

// seed stores n events in batches of 1000, for replay, and waits until they
// have reached the consumer, so that the relay is idle again.
func (r *runner) seed(ctx context.Context, n int64) error {
	src := source("seed")
	t := r.sink.track(src, nil)
	var stored int64
	for stored < n {
		drafts := make([]event.Draft, min(n-stored, 1000))
		for i := range drafts {
			var err error
			if drafts[i], err = r.draft(src, time.Now()); err != nil {
				return err
			}
		}
		if _, err := r.svc.Bus.Append(ctx, drafts); err != nil {
			return err
		}
		stored += int64(len(drafts))
	}
	return r.drain(ctx, t, stored)
}

// drainQueue acks every message of queue until stop is called.
func drainQueue(ctx context.Context, b broker.Broker, queue string) (stop func(), err error) {
	sub, err := b.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: sinkPrefetch})
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range sub.Deliveries() {
			_ = d.Ack()
		}
	})
	return func() { _ = sub.Close(); wg.Wait() }, nil
}
