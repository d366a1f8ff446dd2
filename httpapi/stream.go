package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// GET /v1/events/stream: the events as server-sent events (DESIGN "Live
// stream over HTTP"). Each client reads its backlog from the store by
// itself, page by page, at the pace it takes them; the live part comes from
// one reader per API handler (streamHub) that reads the store after its
// cursor and hands each page to every client. So an idle client costs a
// goroutine and a timer, never a database connection.
//
// Nothing is missed or repeated: the hub reads with store.Reader.Read, which
// returns an event only once no transaction that could commit before it is
// still open (the horizon the relay reads up to), and a client emits an
// event only when its cursor is after the last one it emitted.

// Stream settings.
const (
	// DefaultHeartbeat is how often a stream sends a comment line when it
	// has nothing else to send, so that proxies keep it open and clients
	// see that it is alive.
	DefaultHeartbeat = 15 * time.Second
	// streamPage is the page size of the hub's and the backlog's reads.
	streamPage = 256
	// streamBuffer is how many of the hub's pages a client may have
	// waiting; a client further behind is disconnected (it resumes with
	// Last-Event-ID, from the store, at its own pace).
	streamBuffer = 32
	// streamMinPoll and streamMaxPoll bound the hub's polling interval:
	// it polls at once after a page, then backs off while nothing comes.
	streamMinPoll = 25 * time.Millisecond
	streamMaxPoll = 500 * time.Millisecond
	// streamWriteTimeout bounds each write to a client: one that reads
	// nothing for that long is disconnected.
	streamWriteTimeout = 30 * time.Second
)

// streamParams are the parameters of the stream: those of GET /v1/events
// but limit (a stream has no pages).
var streamParams = slices.DeleteFunc(slices.Clone(eventsParams), func(s string) bool { return s == "limit" })

// Final comments, the last line a stream sends before it closes.
const (
	commentSlow     = "disconnected: the client did not keep up with the events; reconnect with Last-Event-ID to resume where it stopped"
	commentStopping = "the server is stopping; reconnect with Last-Event-ID to resume"
)

// streamEvents answers GET /v1/events/stream.
func (a *api) streamEvents(w http.ResponseWriter, r *http.Request) {
	q, p := parseQuery(r.URL.RawQuery, streamParams, []string{"type"})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	f, stored, p := readFrom(q)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	f.Limit = streamPage
	resume := q.get("after") != ""
	if lastID := r.Header.Get("Last-Event-ID"); lastID != "" {
		c, err := store.ParseCursor(lastID)
		if err != nil {
			writeProblem(w, r, newProblem(http.StatusBadRequest, ProblemInvalidParameter,
				fmt.Sprintf("Last-Event-ID %s is not a cursor this server issued; send the id: of an event this stream sent, or leave it out to start at the live end", clip(lastID))).atField("Last-Event-ID"))
			return
		}
		f.After, resume = c, true
	}
	ctx := readContext(r.Context(), stored)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	if resume {
		// The backlog, up to about the live end, before joining the hub:
		// a client with a long way to go reads at its own pace and holds
		// no buffer.
		full := true
		var err error
		for full {
			if full, err = a.streamBacklog(ctx, s, &f, store.Cursor{}); err != nil {
				a.endStream(w, r, s, err)
				return
			}
		}
	}
	sub, head, err := a.hub.subscribe(ctx, a.requestTimeout, stored)
	if err != nil {
		a.endStream(w, r, s, err)
		return
	}
	defer a.hub.unsubscribe(sub)
	if resume {
		// What committed between the backlog's last page and the hub's
		// cursor.
		for full := true; full; {
			if full, err = a.streamBacklog(ctx, s, &f, head); err != nil {
				a.endStream(w, r, s, err)
				return
			}
		}
		if head.Less(f.After) {
			// The client is ahead of the hub (its cursor came from a read
			// that raced the hub's start): the hub's pages up to it are old.
			head = f.After
		}
	}
	last := head
	if !s.started {
		if err := s.open(); err != nil {
			return
		}
	}
	heartbeat := time.NewTicker(a.heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hub.stopping:
			_ = s.comment(commentStopping)
			return
		case <-sub.gone:
			_ = s.comment(sub.reason)
			return
		case <-heartbeat.C:
			if s.comment("") != nil {
				return
			}
		case page := <-sub.pages:
			for _, env := range page {
				c := store.CursorOf(env)
				if !last.Less(c) {
					continue
				}
				last = c
				if !matches(f, env) {
					continue
				}
				if err := s.event(env); err != nil {
					return
				}
			}
			if err := s.flush(); err != nil {
				return
			}
		}
	}
}

// streamBacklog sends one page of the backlog after f.After, and moves
// f.After on. With a non-zero upTo it sends only events up to it. It
// reports whether more may follow.
func (a *api) streamBacklog(ctx context.Context, s *sseWriter, f *store.Filter, upTo store.Cursor) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, a.requestTimeout)
	page, err := a.reader.Read(rctx, *f)
	cancel()
	if err != nil {
		return false, err
	}
	if !s.started {
		if err := s.open(); err != nil {
			return false, err
		}
	}
	for _, env := range page.Events {
		c := store.CursorOf(env)
		if !upTo.IsZero() && upTo.Less(c) {
			return false, s.flush() // the hub sends it
		}
		if err := s.event(env); err != nil {
			return false, err
		}
		f.After = c
	}
	return len(page.Events) == f.Limit, s.flush()
}

// endStream ends a stream that failed: with a problem before it began,
// with a final comment after.
func (a *api) endStream(w http.ResponseWriter, r *http.Request, s *sseWriter, err error) {
	if s.failed || r.Context().Err() != nil {
		return // the client is gone
	}
	if errors.Is(err, errStreamsStopped) {
		if s.started {
			_ = s.comment(commentStopping)
			return
		}
		p := newProblem(http.StatusServiceUnavailable, ProblemUnavailable, "the server is stopping; retry on another or after the Retry-After delay")
		p.retryAfter = a.retryAfter
		writeProblem(w, r, p)
		return
	}
	if !s.started {
		a.fail(w, r, err)
		return
	}
	infoFrom(r.Context()).err = err
	_ = s.comment("the event store failed; reconnect with Last-Event-ID to resume (the request ID " +
		infoFrom(r.Context()).id + " names the error in the server's log)")
}

// sseWriter writes the text/event-stream format.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     []byte
	started bool
	failed  bool // a write failed: the client is gone or stuck
}

// open sends the headers: from then on, errors end the stream with a
// comment, not a problem.
func (s *sseWriter) open() error {
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	s.w.WriteHeader(http.StatusOK)
	// The server's WriteTimeout would cut the stream; each flush sets a
	// deadline of its own instead.
	return s.comment("stream open")
}

// event adds one event to the buffer: id, event and data lines.
func (s *sseWriter) event(env event.Envelope) error {
	s.buf = append(s.buf, "id: "...)
	s.buf = append(s.buf, store.CursorOf(env).String()...)
	s.buf = append(s.buf, "\nevent: "...)
	s.buf = append(s.buf, env.Type...)
	s.buf = append(s.buf, "\ndata: "...)
	start := len(s.buf)
	var err error
	if s.buf, err = env.AppendCloudEvent(s.buf); err != nil {
		return err
	}
	if ce := s.buf[start:]; bytes.ContainsAny(ce, "\r\n") {
		// The data is stored as written, maybe over several lines; the
		// data: field is one line. Compacting keeps the JSON's meaning.
		var compact bytes.Buffer
		if err := json.Compact(&compact, ce); err != nil {
			return fmt.Errorf("stream: compact event %s: %w", env.ID, err)
		}
		s.buf = append(s.buf[:start], compact.Bytes()...)
	}
	s.buf = append(s.buf, "\n\n"...)
	if len(s.buf) >= 64<<10 {
		return s.flush()
	}
	return nil
}

// comment sends a comment line (a heartbeat when text is empty) at once.
func (s *sseWriter) comment(text string) error {
	s.buf = append(s.buf, ':')
	if text != "" {
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, text...)
	}
	s.buf = append(s.buf, "\n\n"...)
	return s.flush()
}

// flush writes the buffer and flushes it to the client.
func (s *sseWriter) flush() error {
	if s.failed {
		return errStreamWrite
	}
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		s.failed = true
		return fmt.Errorf("%w: %w", errStreamWrite, err)
	}
	return nil
}

var (
	errStreamWrite    = errors.New("stream: the client does not take the events")
	errStreamsStopped = errors.New("stream: the server is stopping")
)

// matches reports whether env passes f's conditions (all but its cursor
// and limit): the conditions store.Reader.Read applies.
func matches(f store.Filter, env event.Envelope) bool {
	switch {
	case len(f.Types) > 0 && !slices.Contains(f.Types, env.Type),
		f.CorrelationID != [16]byte{} && env.CorrelationID != f.CorrelationID,
		f.Subject != "" && env.Subject != f.Subject,
		!f.Since.IsZero() && env.OccurredAt.Before(f.Since),
		!f.Until.IsZero() && !env.OccurredAt.Before(f.Until),
		f.FromPosition > 0 && env.Position < f.FromPosition,
		f.ToPosition > 0 && env.Position > f.ToPosition:
		return false
	}
	return true
}

// streamHub reads the store after its cursor while any stream listens,
// and hands every page to each of them. It starts with the first stream
// and stops with the last, so an API nobody streams from reads nothing.
type streamHub struct {
	reader store.Reader
	// upcast turns the events the hub reads, in their stored versions,
	// into the latest versions, once per page for every stream that wants
	// them (the default; see event.Registry.Upcast).
	upcast func(context.Context, []event.Envelope) error
	// stopping is closed when the server shuts down: every stream ends.
	stopping chan struct{}
	stopOnce sync.Once
	wakeCh   chan struct{}
	buffer   int // each stream's page buffer: streamBuffer but in tests

	mu       sync.Mutex
	subs     map[*streamSub]struct{}
	cursor   store.Cursor  // every event up to it went to the streams
	running  bool          // a reader goroutine runs
	starting chan struct{} // closed when a start in progress ends
}

// streamSub is one stream's place at the hub.
type streamSub struct {
	stored bool // the stream wants the stored versions
	pages  chan []event.Envelope
	gone   chan struct{} // closed when the hub dropped the stream
	reason string        // why, set before gone is closed
}

func newStreamHub(reader store.Reader, upcast func(context.Context, []event.Envelope) error) *streamHub {
	return &streamHub{reader: reader, upcast: upcast, stopping: make(chan struct{}), wakeCh: make(chan struct{}, 1),
		buffer: streamBuffer, subs: map[*streamSub]struct{}{}}
}

// wake tells the hub that events have just been stored, so that it reads
// now rather than at its next poll. It never blocks.
func (h *streamHub) wake() {
	select {
	case h.wakeCh <- struct{}{}:
	default:
	}
}

// stop ends every stream, now and to come.
func (h *streamHub) stop() { h.stopOnce.Do(func() { close(h.stopping) }) }

// subscribe adds a stream, starting the reader if none runs. It returns the
// hub's cursor: the stream gets the pages after it.
func (h *streamHub) subscribe(ctx context.Context, timeout time.Duration, stored bool) (*streamSub, store.Cursor, error) {
	select {
	case <-h.stopping:
		return nil, store.Cursor{}, errStreamsStopped
	default:
	}
	h.mu.Lock()
	for !h.running {
		if h.starting != nil {
			started := h.starting
			h.mu.Unlock()
			select {
			case <-started:
			case <-ctx.Done():
				return nil, store.Cursor{}, ctx.Err()
			}
			h.mu.Lock()
			continue
		}
		started := make(chan struct{})
		h.starting = started
		h.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, timeout)
		head, err := liveEnd(rctx, h.reader)
		cancel()
		h.mu.Lock()
		h.starting = nil
		close(started)
		if err != nil {
			h.mu.Unlock()
			return nil, store.Cursor{}, err
		}
		select {
		case <-h.stopping:
			h.mu.Unlock()
			return nil, store.Cursor{}, errStreamsStopped
		default:
		}
		h.cursor, h.running = head, true
		go h.run(timeout)
	}
	sub := &streamSub{stored: stored, pages: make(chan []event.Envelope, h.buffer), gone: make(chan struct{})}
	h.subs[sub] = struct{}{}
	cursor := h.cursor
	h.mu.Unlock()
	return sub, cursor, nil
}

// unsubscribe removes a stream.
func (h *streamHub) unsubscribe(sub *streamSub) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// drop removes a stream and tells it why. The caller holds h.mu.
func (h *streamHub) drop(sub *streamSub, reason string) {
	delete(h.subs, sub)
	sub.reason = reason
	close(sub.gone)
}

// run reads the store and fans the pages out until no stream is left.
func (h *streamHub) run(timeout time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	idle := streamMinPoll
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.running = false
			h.mu.Unlock()
			return
		case <-h.wakeCh:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		h.mu.Lock()
		cursor := h.cursor
		h.mu.Unlock()
		// The stored versions, so that a stream that asks for them gets
		// them; the others get the page upcast once, below.
		rctx, rcancel := context.WithTimeout(event.WithStoredVersions(ctx), timeout)
		page, err := h.reader.Read(rctx, store.Filter{After: cursor, Limit: streamPage})
		rcancel()
		var latest []event.Envelope
		h.mu.Lock()
		if err != nil {
			// Every stream ends, and resumes from its Last-Event-ID; the
			// next stream starts the hub anew.
			for sub := range h.subs {
				h.drop(sub, "the event store failed; reconnect with Last-Event-ID to resume")
			}
		}
		for sub := range h.subs {
			if len(page.Events) == 0 {
				break
			}
			events := page.Events
			if !sub.stored {
				if latest == nil {
					latest = slices.Clone(page.Events)
					if h.upcast != nil {
						_ = h.upcast(ctx, latest) // it leaves what it cannot upcast as stored
					}
				}
				events = latest
			}
			select {
			case sub.pages <- events:
			default:
				h.drop(sub, commentSlow)
			}
		}
		if err == nil {
			h.cursor = page.Next
		}
		if len(h.subs) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		switch {
		case len(page.Events) == streamPage:
			idle = 0
		case len(page.Events) > 0:
			idle = streamMinPoll
		default:
			idle = min(max(idle*2, streamMinPoll), streamMaxPoll)
		}
		timer.Reset(idle)
	}
}

// liveEnd returns the cursor of the newest event readers can see: from the
// store's Stats when it has them, else by reading to the end.
func liveEnd(ctx context.Context, r store.Reader) (store.Cursor, error) {
	if s, ok := r.(interface {
		Stats(context.Context) (store.Stats, error)
	}); ok {
		st, err := s.Stats(ctx)
		if err != nil {
			return store.Cursor{}, fmt.Errorf("stream: find the live end: %w", err)
		}
		return st.Head, nil
	}
	var c store.Cursor
	for {
		page, err := r.Read(ctx, store.Filter{After: c, Limit: store.MaxLimit})
		if err != nil {
			return store.Cursor{}, fmt.Errorf("stream: find the live end: %w", err)
		}
		c = page.Next
		if len(page.Events) < store.MaxLimit {
			return c, nil
		}
	}
}
