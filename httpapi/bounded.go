package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
)

// DefaultRequestTimeout bounds the time from a request's arrival (its body
// read) to the start of its answer (DESIGN "Bounded answers").
const DefaultRequestTimeout = 5 * time.Second

// errRequestTimeout is the cause of a request's context once its request
// timeout has passed.
var errRequestTimeout = errors.New("no answer within the request timeout")

// bounded runs h under the request timeout. The handler runs on a goroutine
// of its own, with a context that ends when the timeout passes; if it has
// not started its answer by then, the client gets a 503 with Retry-After at
// once, and whatever the handler writes later is dropped. So a store or a
// broker that accepts connections and never answers (or a driver call that
// ignores its context) cannot hang a request: the context bounds the calls
// that honour it, the goroutine bounds the answer in any case.
//
// The body is read before the clock starts: a slow upload is bounded by the
// server's ReadTimeout, and is not the store's fault.
func (a *api) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		preread(r)
		info := infoFrom(r.Context())
		// The handler gets a copy of the request's info: after a timeout
		// the access log reads the original while the abandoned handler
		// may still be writing its copy.
		hinfo := *info
		ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), infoKey{}, &hinfo))
		defer cancel(nil)
		bw := &boundedWriter{w: w, h: w.Header().Clone()}
		done := make(chan any, 1)
		go func() {
			defer func() {
				v := recover()
				if v != nil && v != http.ErrAbortHandler && bw.abandoned() {
					a.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "http handler panicked after its request timed out",
						slog.String("request_id", hinfo.id), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				}
				done <- v
			}()
			h(bw, r.WithContext(ctx))
		}()
		timer := time.NewTimer(a.requestTimeout)
		defer timer.Stop()
		finished := func(v any) {
			info.problem, info.err, info.clientGone = hinfo.problem, hinfo.err, hinfo.clientGone
			if v != nil {
				panic(v) // ServeHTTP recovers it, as it would the handler's own
			}
		}
		select {
		case v := <-done:
			finished(v)
			return
		case <-timer.C:
		}
		if !bw.abandon() {
			// The answer has begun: the store and the broker have done
			// their part. The server's WriteTimeout bounds the rest.
			finished(<-done)
			return
		}
		cancel(errRequestTimeout)
		info.err = fmt.Errorf("%w (%s): the store or the broker did not answer", errRequestTimeout, a.requestTimeout)
		writeProblem(w, r, a.timeoutProblem(r))
	}
}

// timeoutProblem is the answer to a request whose timeout passed.
func (a *api) timeoutProblem(r *http.Request) *Problem {
	detail := fmt.Sprintf("the event store or the broker did not answer within the request timeout (%s); retry after the Retry-After delay", a.requestTimeout)
	if r.Method == http.MethodPost && infoFrom(r.Context()).route == "/v1/events" {
		detail += ". The events may have been stored all the same: send them again with the same ids, " +
			"which stores nothing twice and answers 200 with the stored events"
	}
	p := newProblem(http.StatusServiceUnavailable, ProblemUnavailable, detail)
	p.retryAfter = a.retryAfter
	return p
}

// preread reads r's body (which MaxBytesReader limits) into memory, and
// gives the handler a body that returns the same bytes, then the same
// error, as the original.
func preread(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= 1<<20 {
		buf.Grow(int(n))
	}
	_, err := buf.ReadFrom(r.Body)
	r.Body = &prereadBody{r: bytes.NewReader(buf.Bytes()), err: err}
}

// prereadBody is a body read in advance.
type prereadBody struct {
	r   *bytes.Reader
	err error // the error that ended the original's reading, if any
}

func (b *prereadBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.err != nil {
		err = b.err
	}
	return n, err
}

func (b *prereadBody) Close() error { return nil }

// boundedWriter is the handler's side of a bounded request. Until the
// handler starts its answer, the request may be abandoned; from then on
// the handler owns the answer.
type boundedWriter struct {
	w  http.ResponseWriter
	h  http.Header // the handler's headers, copied to w when it answers
	mu sync.Mutex
	// started: the handler began its answer; dropped: the request was
	// abandoned, and the handler's writes go nowhere.
	started, dropped bool
}

func (b *boundedWriter) Header() http.Header { return b.h }

func (b *boundedWriter) WriteHeader(code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writeHeaderLocked(code)
}

func (b *boundedWriter) writeHeaderLocked(code int) {
	if b.dropped || b.started {
		return
	}
	b.started = true
	dst := b.w.Header()
	clear(dst)
	for k, v := range b.h {
		dst[k] = v
	}
	b.w.WriteHeader(code)
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return 0, http.ErrHandlerTimeout
	}
	b.writeHeaderLocked(http.StatusOK)
	return b.w.Write(p)
}

// abandon drops the handler's answer, unless it has begun; it reports
// whether it did.
func (b *boundedWriter) abandon() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return false
	}
	b.dropped = true
	return true
}

func (b *boundedWriter) abandoned() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (b *boundedWriter) Unwrap() http.ResponseWriter { return b.w }

// withinTimeout runs fn on a goroutine of its own, with a context that ends
// after timeout, and returns its error, or an error wrapping
// errRequestTimeout if it did not return in time (fn then runs on,
// abandoned, and its result is dropped). For a call made on behalf of a
// request that is not bounded as a whole.
func withinTimeout(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errRequestTimeout)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // fn returned first; its own cancel ended ctx
			return err
		default:
		}
		return fmt.Errorf("%w (%s)", context.Cause(ctx), timeout)
	}
}

// replayBounded runs Admin.Replay for a request. A replay takes as long as
// it takes, so the request timeout bounds its progress instead of its
// length: when no event is confirmed for that long (from the start, or
// since the last confirm), for example because the store or the broker
// stopped answering, it is cancelled and abandoned, and the result says
// how far it got.
func (a *api) replayBounded(ctx context.Context, opts ReplayRequest) (wire.ReplayResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		last = wire.ReplayResult{Resume: opts.Filter.After.String()}
	)
	progressed := make(chan struct{}, 1)
	report := opts.Progress
	opts.Progress = func(p wire.ReplayResult) {
		mu.Lock()
		last = p
		mu.Unlock()
		select {
		case progressed <- struct{}{}:
		default:
		}
		if report != nil {
			report(p)
		}
	}
	type outcome struct {
		res wire.ReplayResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.admin.Replay(ctx, opts)
		done <- outcome{res, err}
	}()
	timer := time.NewTimer(a.requestTimeout)
	defer timer.Stop()
	for {
		select {
		case o := <-done:
			return o.res, o.err
		case <-progressed:
			timer.Reset(a.requestTimeout)
		case <-timer.C:
			cancel(errRequestTimeout)
			mu.Lock()
			p := last
			mu.Unlock()
			p.Complete = false
			return p,
				fmt.Errorf("replay: %w (%s): no event was confirmed for that long", errRequestTimeout, a.requestTimeout)
		}
	}
}
