package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edupulse/eventbus/event"
)

// StreamIdleTimeout is how long Tail waits on a live stream that sends
// nothing, not even the heartbeat the server sends every 15 s, before it
// takes the connection for dead and reconnects.
const StreamIdleTimeout = 45 * time.Second

// maxStreamLine bounds one line of the live stream: an event of the
// largest data the bus accepts, encoded, fits many times over.
const maxStreamLine = 8 << 20

// Tail follows the events f selects as they commit, in commit order, after
// f.After: from the beginning when it is "", from now on when it is End's
// cursor. It reads what is stored page by page, then follows the live
// stream (GET /v1/events/stream, read scope), reconnecting with the last
// event's cursor when the stream ends, so that it misses nothing and sees
// nothing twice; it never skips an event whose transaction commits late.
// While the store holds no event at all it asks again every poll (0 or
// less: 200 ms). It runs until ctx ends, then stops without an error; an
// error (an answer that is not the stream, a server that cannot be
// reached) is yielded, and ends it.
func (c *Client) Tail(ctx context.Context, f Filter, poll time.Duration) iter.Seq2[event.Envelope, error] {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	return func(yield func(event.Envelope, error) bool) {
		stopped := false
		emit := func(e event.Envelope, err error) bool {
			if !yield(e, err) {
				stopped = true
			}
			return !stopped
		}
		after, ok := f.After, true
		if after == "" {
			if after, ok = c.backlog(ctx, f, poll, emit); !ok {
				return
			}
		}
		for {
			opened, err := c.follow(ctx, f, &after, emit)
			switch {
			case stopped || ctx.Err() != nil:
				return
			case err != nil && (!opened || errors.Is(err, ErrBadAnswer)):
				// Not the stream, or a stream that is not what the API
				// documents: reconnecting would get the same.
				emit(event.Envelope{}, err)
				return
			}
			// The stream was open and ended (the server stopped, dropped
			// a slow reader, or the connection broke): take it up again
			// from the last event, after a pause that keeps a server that
			// keeps dropping us from being called in a loop.
			select {
			case <-ctx.Done():
				return
			case <-time.After(poll):
			}
		}
	}
}

// backlog yields what f selects from the beginning, page by page, and
// returns the cursor to follow the stream from: the last event's, or the
// head the store had before the pages were read when none matched (every
// event the filter selects after it comes after the pages). It waits while
// the store is empty, since the stream without a cursor would start at
// whatever the live end is when it opens.
func (c *Client) backlog(ctx context.Context, f Filter, poll time.Duration, emit func(event.Envelope, error) bool) (string, bool) {
	f.Limit = MaxLimit
	fail := func(err error) (string, bool) {
		if ctx.Err() == nil { // an ended ctx ends Tail without an error
			emit(event.Envelope{}, err)
		}
		return "", false
	}
	for {
		head, err := c.End(ctx, f)
		if err != nil {
			return fail(err)
		}
		for {
			page, err := c.Events(ctx, f)
			if err != nil {
				return fail(err)
			}
			for _, e := range page.Events {
				if !emit(e, nil) {
					return "", false
				}
			}
			if len(page.Events) == 0 {
				break
			}
			f.After = page.Next
		}
		if f.After != "" {
			return f.After, true
		}
		if head != "" {
			return head, true
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(poll):
		}
	}
}

// follow reads the live stream after *after until it ends, moving *after
// to each event it yields. opened says whether the server answered with
// the stream: an error before that is the caller's to report, one after it
// is a stream that ended.
func (c *Client) follow(ctx context.Context, f Filter, after *string, emit func(event.Envelope, error) bool) (opened bool, err error) {
	const where = "GET /v1/events/stream"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.After, f.Limit = "", 0
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/events/stream", f.query(), nil)
	if err != nil {
		return false, fmt.Errorf("eventbus client: %s: %w", where, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if *after != "" {
		req.Header.Set("Last-Event-ID", *after)
	}
	// Every wait is bounded: the server sends at least a heartbeat every
	// 15 s, so silence past StreamIdleTimeout is a dead connection.
	var idle atomic.Bool
	watchdog := time.AfterFunc(StreamIdleTimeout, func() { idle.Store(true); cancel() })
	defer watchdog.Stop()
	resp, err := c.http.Do(req)
	if err != nil {
		if idle.Load() {
			return false, fmt.Errorf("eventbus client: %s: no answer from %s within %s: %w", where, c.base.Host, StreamIdleTimeout, context.DeadlineExceeded)
		}
		return false, c.transportError(ctx, where, StreamIdleTimeout, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, problemError(where, resp, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("eventbus client: %s: %w: the answer is not an event stream: %s", where, ErrBadAnswer, snippet(ct, body))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxStreamLine)
	var id string
	var data []byte
	for sc.Scan() {
		watchdog.Reset(StreamIdleTimeout)
		line := sc.Bytes()
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch {
		case len(line) == 0: // the end of a message
			if data == nil {
				continue
			}
			var e event.Envelope
			if err := json.Unmarshal(data, &e); err != nil {
				return true, fmt.Errorf("eventbus client: %s: %w: an event of the stream is not a CloudEvent (%v): %s", where, ErrBadAnswer, err, snippet("text/event-stream", data))
			}
			if id == "" {
				return true, fmt.Errorf("eventbus client: %s: %w: an event of the stream has no id line", where, ErrBadAnswer)
			}
			*after, data, id = id, nil, ""
			if !emit(e, nil) {
				return true, nil
			}
		case len(field) == 0: // a comment: the opening, a heartbeat, or why it ends
			opened = true
		case string(field) == "id":
			id = string(value)
		case string(field) == "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return opened, fmt.Errorf("eventbus client: %s: %w", where, err)
	}
	return opened, nil
}
