// Package client is the Go client of the event bus's HTTP API (`eventbus
// serve`): publish events, read them page by page or follow them live, and
// operate the relay, replays and dead letters, from a program that does not
// open the store or the broker itself. The `eventbus` command uses it for
// --server.
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithToken(os.Getenv("EVENTBUS_API_TOKEN")))
//	...
//	for ev, err := range c.All(ctx, client.Filter{Types: []string{"quiz.submitted"}}) {
//		...
//	}
//
// Every call takes a context and is bounded (WithTimeout, 30 s by default):
// a server that accepts the connection and says nothing makes the call fail
// in time, never hang. An error answer is an [*Error] that carries the
// server's RFC 9457 problem (type, title, status, detail, field); it
// matches sentinels such as [ErrNotFound], [ErrUnauthorized] and
// [ErrInvalidEvent] with errors.Is. An answer the client cannot read (not
// JSON, not the shape the API documents) is an error that wraps
// [ErrBadAnswer].
//
// The bodies are those of package httpapi/wire, which the server encodes
// with; the aliases below let programs name them from this package.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
)

// The API's bodies, as this package's names.
type (
	NewEvent       = wire.NewEvent
	EventPage      = wire.EventPage
	StreamPage     = wire.StreamPage
	Status         = wire.Status
	PartitionState = wire.PartitionState
	Parked         = wire.Parked
	RetryResult    = wire.RetryResult
	Erasure        = wire.Erasure
	ReplayRequest  = wire.ReplayRequest
	ReplayResult   = wire.ReplayResult
	ReplayPlan     = wire.ReplayPlan
	DeadLetter     = wire.DeadLetter
	Ready          = wire.Ready
	Problem        = wire.Problem
)

// Defaults.
const (
	// DefaultTimeout bounds a call, from sending the request to reading
	// the whole answer.
	DefaultTimeout = 30 * time.Second
	// DefaultReplayTimeout bounds a replay that runs (not a dry run): the
	// server answers once it is done, and bounds it by its progress.
	DefaultReplayTimeout = time.Hour
	// MaxAnswerBytes bounds an answer the client reads: a page of the
	// largest size with large events fits.
	MaxAnswerBytes = 512 << 20
)

// Client calls one event bus server. It is safe for concurrent use.
type Client struct {
	base          *url.URL
	http          *http.Client
	token         string
	timeout       time.Duration
	replayTimeout time.Duration
	userAgent     string
	stored        bool
}

// Config configures New. The zero Config is a client without a token,
// through http.DefaultClient, with the default bounds.
type Config struct {
	// Token is sent as "Authorization: Bearer <token>". A server with auth
	// on needs one with the scope of the call: publish, read or admin.
	Token string
	// HTTPClient sends the requests (a transport with TLS settings, a
	// proxy, instrumentation). Its Timeout, if any, applies on top of the
	// client's own. nil: http.DefaultClient.
	HTTPClient *http.Client
	// Timeout bounds every call but a replay that runs. 0: DefaultTimeout.
	Timeout time.Duration
	// ReplayTimeout bounds a replay that runs. 0: DefaultReplayTimeout.
	ReplayTimeout time.Duration
	// UserAgent is the User-Agent header of every request. "":
	// "eventbus-client".
	UserAgent string
	// StoredVersions asks the server for every event in the version of its
	// type it was stored in (stored=true on reads, the live stream and
	// replays). By default the server sends each event upcast to the
	// latest version of its type; an event's DataSchema names the version
	// either way.
	StoredVersions bool
}

// New returns a client of the server at baseURL, such as
// "http://127.0.0.1:8080" or "https://bus.example.org/eventbus" (a path
// prefix is kept, for a server behind a reverse proxy).
func New(baseURL string, cfg Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("eventbus client: base URL %q: give the server's address as http://host:port or https://host[:port][/prefix], without query or credentials", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{base: u, http: cfg.HTTPClient, token: cfg.Token, timeout: cfg.Timeout,
		replayTimeout: cfg.ReplayTimeout, userAgent: cfg.UserAgent, stored: cfg.StoredVersions}
	if c.userAgent == "" {
		c.userAgent = "eventbus-client"
	}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.replayTimeout <= 0 {
		c.replayTimeout = DefaultReplayTimeout
	}
	return c, nil
}

// BaseURL returns the server's address, as New took it.
func (c *Client) BaseURL() string { return c.base.String() }

// call is one request: method and path (with its query), the body to send
// as JSON (nil for none), and where to decode a 2xx answer (nil to drop
// it). It returns the answer's status.
type call struct {
	method, path string
	query        url.Values
	body         any
	timeout      time.Duration // 0: the client's
	// answer decodes a 2xx answer; what names the expected value in errors.
	answer func(body []byte) error
	what   string
}

// do runs a call within its bound, and returns the status of a 2xx answer.
func (c *Client) do(ctx context.Context, cl call) (int, error) {
	timeout := cl.timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	where := cl.method + " " + cl.path
	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return 0, fmt.Errorf("eventbus client: %s: encode the request: %w", where, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, cl.method, cl.path, cl.query, body)
	if err != nil {
		return 0, fmt.Errorf("eventbus client: %s: %w", where, err)
	}
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, "+wire.ProblemContentType)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.transportError(ctx, where, timeout, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return 0, c.transportError(ctx, where, timeout, fmt.Errorf("read the answer: %w", err))
	}
	if len(answer) > MaxAnswerBytes {
		return 0, fmt.Errorf("eventbus client: %s: %w: the answer is over %d bytes; ask for smaller pages", where, ErrBadAnswer, MaxAnswerBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, problemError(where, resp, answer)
	}
	if cl.answer != nil {
		if err := cl.answer(answer); err != nil {
			return 0, fmt.Errorf("eventbus client: %s: %w: the %s answer is not %s (%v): %s", where, ErrBadAnswer,
				resp.Status, cl.what, err, snippet(resp.Header.Get("Content-Type"), answer))
		}
	}
	return resp.StatusCode, nil
}

// newRequest is a request to path under the base URL, with the query, the
// token and the User-Agent.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	var err error
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, err
	}
	if c.stored && method == http.MethodGet && (strings.HasPrefix(path, "/v1/events") || strings.HasPrefix(path, "/v1/streams/")) {
		query = maps.Clone(query)
		if query == nil {
			query = url.Values{}
		}
		query.Set("stored", "true")
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// transportError says why no answer came: the call's bound, the caller's
// context, or the connection.
func (c *Client) transportError(ctx context.Context, where string, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("eventbus client: %s: no answer from %s within %s: %w", where, c.base.Host, timeout, context.DeadlineExceeded)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("eventbus client: %s: %w", where, ctx.Err())
	}
	return fmt.Errorf("eventbus client: %s: cannot reach the server at %s: %w: %w", where, c.base.Host, ErrUnreachable, err)
}

// decodeInto returns an answer decoder into v.
func decodeInto(v any) func([]byte) error {
	return func(b []byte) error {
		if b = bytes.TrimSpace(b); len(b) == 0 || string(b) == "null" {
			return errors.New("the answer is empty")
		}
		return json.Unmarshal(b, v)
	}
}

// snippet shows the start of an answer that could not be read, for the
// error message: printable, short.
func snippet(contentType string, b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(b) > n {
		s += "..."
	}
	if contentType == "" {
		contentType = "no Content-Type"
	}
	return fmt.Sprintf("%s, %q", contentType, s)
}

// problemError turns an error answer into an *Error: the problem it
// carries or, when it carries none (a proxy's page), one made from the
// status.
func problemError(where string, resp *http.Response, body []byte) error {
	e := &Error{Call: where}
	if err := json.Unmarshal(body, &e.Problem); err != nil || e.Problem.Status == 0 || e.Problem.Type == "" {
		e.Problem = wire.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode),
			Detail: "the answer carries no problem document: " + snippet(resp.Header.Get("Content-Type"), body)}
	}
	e.Problem.Status = resp.StatusCode // the status line wins over the body
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}
