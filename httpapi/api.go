package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/store"
)

// Appender stores events atomically and reports, for each, whether its ID
// was already stored. *eventbus.Bus[TTx] satisfies it for any TTx.
type Appender interface {
	Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error)
	Registry() *event.Registry
}

// Check is a named readiness check, such as the store's or the broker's
// Ping.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Defaults.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultRetryAfter   = 5 * time.Second
	DefaultReadyTimeout = 2 * time.Second
)

// Config configures the handler. Bus and Reader are required; everything
// else has a default or is optional.
type Config struct {
	// Bus stores published events: an *eventbus.Bus.
	Bus Appender
	// Reader reads the event store.
	Reader store.Reader
	// Status reports the relay's state for GET /v1/status, in the wire's
	// terms: service.HTTPStatus adapts relay.ReadStatus to it. When nil,
	// the route answers 501.
	Status func(ctx context.Context) (wire.Status, error)
	// Parked lists the relay's parked events for GET /v1/parked:
	// service.HTTPParked adapts relay.ListParked to it. When nil, the
	// route answers 501.
	Parked func(ctx context.Context) ([]wire.Parked, error)
	// Ready are the checks of GET /readyz, typically the store's and the
	// broker's Ping. Each gets ReadyTimeout. With none, /readyz answers 200.
	Ready        []Check
	ReadyTimeout time.Duration
	// Metrics is the registry the handler registers its metrics in and that
	// GET /metrics serves. Pass the process's registry, so that /metrics
	// also shows the relay's and the runtime's. When nil, a registry of the
	// handler's own is used.
	Metrics *prometheus.Registry
	// Tokens are the API tokens (see auth.ParseTokens). With none, auth is off.
	Tokens []auth.Token
	// MaxBodyBytes bounds request bodies (DefaultMaxBodyBytes when 0).
	MaxBodyBytes int64
	// RetryAfter is the Retry-After of 503 answers (DefaultRetryAfter when 0).
	RetryAfter time.Duration
	// RequestTimeout bounds every request, from its body read to the start
	// of its answer (DefaultRequestTimeout when 0): a request whose store
	// or broker calls do not finish in time gets a 503 with Retry-After.
	// POST /v1/replay is bounded by its progress instead: it answers 503
	// when no event is confirmed for RequestTimeout. /readyz answers within
	// the lesser of ReadyTimeout and RequestTimeout.
	RequestTimeout time.Duration
	// Logger receives the access log and the errors behind 5xx answers.
	// When nil, nothing is logged.
	Logger *slog.Logger
	// Admin holds the operations of the admin routes. Each may be nil.
	Admin Admin
	// Heartbeat is how often GET /v1/events/stream sends a comment when it
	// has no event to send (DefaultHeartbeat when 0).
	Heartbeat time.Duration
	// Console, when set, is served at / (the web console, see package
	// console); /v1 and the probes keep their routes.
	Console http.Handler
}

type api struct {
	bus          Appender
	reader       store.Reader
	status       func(ctx context.Context) (wire.Status, error)
	parked       func(ctx context.Context) ([]wire.Parked, error)
	ready        []Check
	readyTimeout time.Duration
	auth         *authenticator
	maxBody      int64
	retryAfter   time.Duration
	log          *slog.Logger
	admin        Admin
	metrics      *metrics
	mux          *http.ServeMux
	routes       []Endpoint // what route registered, for GET /v1
	hub          *streamHub // the live part of GET /v1/events/stream
	heartbeat    time.Duration

	// requestTimeout bounds each request; see Config.RequestTimeout.
	requestTimeout time.Duration
}

// commonParts checks the readiness checks and builds what the API and the
// probes (Probes) both need: the authenticator of tokens, and the metrics
// in reg, or in a registry of their own when reg is nil.
func commonParts(ready []Check, tokens []auth.Token, reg *prometheus.Registry) (*authenticator, *metrics, *prometheus.Registry, error) {
	for _, c := range ready {
		if c.Name == "" || c.Check == nil {
			return nil, nil, nil, errors.New("httpapi: every readiness check needs a name and a func")
		}
	}
	authn, err := newAuthenticator(tokens)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("httpapi: %w", err)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("httpapi: %w", err)
	}
	return authn, m, reg, nil
}

// New returns the HTTP API's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Bus == nil || cfg.Reader == nil {
		return nil, errors.New("httpapi: Config.Bus and Config.Reader are required")
	}
	if cfg.MaxBodyBytes < 0 || cfg.RetryAfter < 0 || cfg.ReadyTimeout < 0 || cfg.RequestTimeout < 0 || cfg.Heartbeat < 0 {
		return nil, errors.New("httpapi: MaxBodyBytes, RetryAfter, ReadyTimeout, RequestTimeout and Heartbeat must not be negative")
	}
	authn, m, reg, err := commonParts(cfg.Ready, cfg.Tokens, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	a := &api{
		bus: cfg.Bus, reader: cfg.Reader, status: cfg.Status, parked: cfg.Parked, ready: cfg.Ready,
		readyTimeout: orDefault(cfg.ReadyTimeout, DefaultReadyTimeout), auth: authn,
		maxBody: orDefault(cfg.MaxBodyBytes, DefaultMaxBodyBytes), retryAfter: orDefault(cfg.RetryAfter, DefaultRetryAfter),
		log: cfg.Logger, admin: cfg.Admin, metrics: m, mux: http.NewServeMux(),
		requestTimeout: orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		hub:            newStreamHub(cfg.Reader, cfg.Bus.Registry().Upcast), heartbeat: orDefault(cfg.Heartbeat, DefaultHeartbeat),
	}
	a.readyTimeout = min(a.readyTimeout, a.requestTimeout)
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.route("POST /v1/events", auth.ScopePublish, a.postEvents)
	a.route("GET /v1/events", auth.ScopeRead, a.listEvents)
	a.route("GET /v1/events/stream", auth.ScopeRead, a.streamEvents)
	a.route("GET /v1/events/{id}", auth.ScopeRead, a.getEvent)
	a.route("GET /v1/streams/{subject...}", auth.ScopeRead, a.getStream)
	a.route("GET /v1/status", auth.ScopeRead, a.getStatus)
	a.route("GET /v1/schemas", auth.ScopeRead, a.getSchemas)
	a.route("POST /v1/replay", auth.ScopeAdmin, a.replay)
	a.route("GET /v1/parked", auth.ScopeRead, a.listParked)
	a.route("POST /v1/parked/retry", auth.ScopeAdmin, a.retryParked)
	a.route("GET /v1/dead-letters/{group}", auth.ScopeAdmin, a.listDeadLetters)
	a.route("POST /v1/dead-letters/{group}/requeue", auth.ScopeAdmin, a.requeueDeadLetters)
	a.route("POST /v1/data-subjects/{id}/erase", auth.ScopeAdmin, a.eraseDataSubject)
	a.route("GET /healthz", 0, a.healthz)
	a.route("GET /readyz", 0, a.readyz)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelError)})
	a.route("GET /metrics", 0, metricsHandler.ServeHTTP)
	a.routeDocs()
	if cfg.Console != nil {
		a.routeConsole(cfg.Console)
	}
	return a, nil
}

// selfBounded are the routes that the request timeout does not bound as a
// whole: a replay runs as long as it makes progress, and /readyz has its
// own, shorter, deadline. Streaming routes belong here too.
var selfBounded = map[string]bool{
	"POST /v1/replay": true,
	"GET /readyz":     true,
	// A stream is open as long as its client listens.
	"GET /v1/events/stream": true,
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// route registers h for pattern. scope is what the token must grant; 0 for
// an open route. h runs under the request timeout (see bounded), but for
// the routes in selfBounded, which bound their own calls.
func (a *api) route(pattern string, scope auth.Scope, h http.HandlerFunc) {
	_, path, _ := strings.Cut(pattern, " ")
	a.routes = append(a.routes, endpointOf(pattern, scope))
	if !selfBounded[pattern] {
		h = a.bounded(h)
	}
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		info := infoFrom(r.Context())
		info.route = path
		if scope != 0 && a.auth.enabled() {
			tok, p := a.auth.authenticate(r, scope)
			info.token = tok.Name
			if p != nil {
				writeProblem(w, r, p)
				return
			}
		}
		h(w, r)
	})
}

// requestInfo is what the middleware and the handlers learn about a request
// and share for the access log and the metrics.
type requestInfo struct {
	id      string
	route   string // the matched pattern's path; "" while unmatched
	token   string // the name of the token presented, if any
	problem string // the problem type answered, if any
	err     error  // the error behind a 5xx answer
	// clientGone is set when the client went away before the answer.
	clientGone bool
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// ServeHTTP runs the middleware around the routes: request ID, body limit,
// panic recovery, problem answers for the mux's own 404 and 405, the access
// log and the metrics.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &requestInfo{id: requestID(r.Header.Get("X-Request-ID"))}
	w.Header().Set("X-Request-ID", info.id)
	if r.Body != nil {
		// On the original writer: MaxBytesReader closes the connection after
		// an oversized body through it.
		r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	}
	r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	rec := &recorder{ResponseWriter: w, req: r, info: info}
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			info.err = fmt.Errorf("panic: %v", v)
			a.log.LogAttrs(r.Context(), slog.LevelError, "http handler panicked",
				slog.String("request_id", info.id), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			if rec.status == 0 {
				writeProblem(rec, r, newProblem(500, ProblemInternal, "the server failed; the request ID identifies it in the server's log"))
			}
		}
		a.finish(rec, r, time.Since(start))
		if v == http.ErrAbortHandler {
			panic(v)
		}
	}()
	a.mux.ServeHTTP(rec, r)
}

// finish writes the access log line and the metrics of a request. It never
// logs headers: the Authorization header stays out of the log.
func (a *api) finish(rec *recorder, r *http.Request, d time.Duration) {
	info := rec.info
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if info.clientGone {
		status = statusClientClosed
	}
	route := info.route
	if route == "" {
		route = "unmatched"
	}
	a.metrics.observe(r.Method, route, status, d)
	level := slog.LevelInfo
	switch {
	case status >= 500 && status != statusClientClosed:
		level = slog.LevelError
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		level = slog.LevelDebug // probes and scrapes would drown the log
	}
	if !a.log.Enabled(r.Context(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
		slog.Int("status", status), slog.Duration("duration", d), slog.Int64("bytes", rec.bytes),
		slog.String("request_id", info.id), slog.String("remote", r.RemoteAddr))
	if info.token != "" {
		attrs = append(attrs, slog.String("token", info.token))
	}
	if info.problem != "" {
		attrs = append(attrs, slog.String("problem", info.problem))
	}
	if info.err != nil {
		attrs = append(attrs, slog.String("error", info.err.Error()))
	}
	a.log.LogAttrs(r.Context(), level, "http request", attrs...)
}

// statusClientClosed is logged (never sent) when the client went away
// before the answer, as nginx does.
const statusClientClosed = 499

// requestID returns the client's X-Request-ID when it is sane (1 to 128
// characters of a URL-safe set), else a new UUIDv7: the ID goes into logs
// and headers, so it must not carry control characters or a novel.
func requestID(given string) string {
	if given != "" && len(given) <= 128 {
		ok := true
		for i := 0; i < len(given) && ok; i++ {
			c := given[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=' || c == '@'
		}
		if ok {
			return given
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// recorder records the status and size of an answer. It also turns the
// plain-text 404 and 405 answers of the mux (no route matched) into
// problems.
type recorder struct {
	http.ResponseWriter
	req     *http.Request
	info    *requestInfo
	status  int
	bytes   int64
	swallow bool // the mux's text body is dropped after its problem replaced it
}

func (w *recorder) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if w.info.route == "" && code >= 400 {
		typ, detail := ProblemNotFound, "no route matches "+w.req.URL.Path+"; see the API's routes under /v1"
		if code == http.StatusMethodNotAllowed {
			typ, detail = ProblemMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", w.req.Method, w.req.URL.Path, w.Header().Get("Allow"))
		}
		writeProblem(countingWriter{w.ResponseWriter, &w.bytes}, w.req, newProblem(code, typ, detail))
		w.swallow = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// countingWriter adds what it writes to n: the access log records the
// bytes of the problems that replace the mux's own answers too.
type countingWriter struct {
	http.ResponseWriter
	n *int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	*c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
