package client

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
)

// MaxLimit is the most events a page may hold (the server's limit).
const MaxLimit = 10000

// Filter selects events, as the query parameters of GET /v1/events. The
// zero Filter selects every event from the beginning.
type Filter struct {
	// After is the cursor to read after: the Next of a page, or "" for
	// the beginning.
	After string
	// Limit is the most events of a page, 1 to MaxLimit; 0: the server's
	// default (100).
	Limit         int
	Types         []string  // any of these types
	CorrelationID uuid.UUID // with this correlation ID
	Subject       string    // in this stream
	Since         time.Time // occurred at or after
	Until         time.Time // occurred before
	FromPosition  int64     // global position at least this, when > 0
	ToPosition    int64     // global position at most this, when > 0
}

// query encodes f as the API's query parameters.
func (f Filter) query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("after", f.After)
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	for _, t := range f.Types {
		q.Add("type", t)
	}
	if f.CorrelationID != uuid.Nil {
		q.Set("correlation_id", f.CorrelationID.String())
	}
	set("subject", f.Subject)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.FromPosition > 0 {
		q.Set("from_position", strconv.FormatInt(f.FromPosition, 10))
	}
	if f.ToPosition > 0 {
		q.Set("to_position", strconv.FormatInt(f.ToPosition, 10))
	}
	return q
}

// Stored is a published event: the stored envelope, and whether it is new
// (false when an event with its ID was stored already: the envelope is
// then the original).
type Stored struct {
	Event event.Envelope
	New   bool
}

// Publish stores one event (POST /v1/events, publish scope). Sending an
// event again with the same ID stores nothing new: the answer is the
// stored original, with New false.
func (c *Client) Publish(ctx context.Context, e NewEvent) (Stored, error) {
	var out Stored
	status, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/events", body: e,
		answer: decodeInto(&out.Event), what: "a CloudEvent"})
	out.New = status == http.StatusCreated
	return out, err
}

// StoredBatch is a published batch: the stored envelopes in the order
// sent, and whether at least one was new.
type StoredBatch struct {
	Events []event.Envelope
	New    bool
}

// PublishBatch stores events atomically, all or none (POST /v1/events,
// publish scope).
func (c *Client) PublishBatch(ctx context.Context, events []NewEvent) (StoredBatch, error) {
	var list wire.EventList
	status, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/events", body: wire.NewEventBatch{Events: events},
		answer: decodeInto(&list), what: "a list of events"})
	if err == nil && len(list.Events) != len(events) {
		return StoredBatch{}, fmt.Errorf("eventbus client: POST /v1/events: %w: %d events sent, %d answered", ErrBadAnswer, len(events), len(list.Events))
	}
	return StoredBatch{Events: list.Events, New: status == http.StatusCreated}, err
}

// Events reads one page of events in commit order (GET /v1/events, read
// scope). Pass the page's Next as the next Filter.After; a page with no
// events is the end, for now.
func (c *Client) Events(ctx context.Context, f Filter) (EventPage, error) {
	var page EventPage
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/events", query: f.query(),
		answer: decodeInto(&page), what: "a page of events"})
	return page, err
}

// All reads every event f selects, page after page, in commit order, and
// stops at the end. Each page is one bounded call. On an error it yields
// the error and stops; breaking out of the loop stops it too.
func (c *Client) All(ctx context.Context, f Filter) iter.Seq2[event.Envelope, error] {
	return func(yield func(event.Envelope, error) bool) {
		for {
			page, err := c.Events(ctx, f)
			if err != nil {
				yield(event.Envelope{}, err)
				return
			}
			if len(page.Events) == 0 {
				return
			}
			for _, e := range page.Events {
				if !yield(e, nil) {
					return
				}
			}
			f.After = page.Next
		}
	}
}

// End returns the cursor after the newest event readers can see now (the
// head of GET /v1/status): where Tail starts to follow only what commits
// from now on, whatever f selects. It is "" while the store is empty.
func (c *Client) End(ctx context.Context, f Filter) (string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	return st.Head, nil
}

// Event reads one event by its ID (GET /v1/events/{id}, read scope); an
// error matching ErrNotFound when there is none.
func (c *Client) Event(ctx context.Context, id uuid.UUID) (event.Envelope, error) {
	var e event.Envelope
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/events/" + id.String(),
		answer: decodeInto(&e), what: "a CloudEvent"})
	return e, err
}

// Stream reads a page of one stream's events in version order, from
// version from (1 for the start), at most limit (0: the server's default)
// (GET /v1/streams/{subject}, read scope). Pass NextVersion as the next
// from.
func (c *Client) Stream(ctx context.Context, subject string, from int64, limit int) (StreamPage, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.FormatInt(from, 10))
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page StreamPage
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/streams/" + url.PathEscape(subject), query: q,
		answer: decodeInto(&page), what: "a page of a stream"})
	return page, err
}
