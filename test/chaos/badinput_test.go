package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

// httpCase is a request of the bad-input table and the answer it must get.
type httpCase struct {
	method, path string
	contentType  string // "" sends none
	body         []byte
	auth         string // the Authorization header; "" sends the valid token
	status       int
	problem      string // the problem type; "" for a 200 that must hold no events
}

// libCase is a call of the library with a bad input, and the sentinel its
// error must wrap. A nil want means the call must succeed and find nothing
// (a filter that matches no event is not an error).
type libCase struct {
	call func(ctx context.Context, l *library) error
	want error
}

// library is the Go side of the table: a bus and a store on the schema.
type library struct {
	bus   *eventbus.Bus[pgx.Tx]
	store *postgres.Store
}

// badInput is one row: a bad input, tried against the HTTP API and the
// library.
type badInput struct {
	name string
	http []httpCase
	lib  []libCase
}

// TestBadInput tries a table of bad inputs against the HTTP API of a serve
// process and against the library. Each must get a clear, typed error, and
// nothing may be stored or published (G7).
func TestBadInput(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := testenv.Context(t, 5*time.Minute)
	h.startServe(ctx)
	st, err := postgres.Open(ctx, h.schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	lib := &library{store: st, bus: eventbus.New(st, eventbus.Config{Registry: edupulse.Registry(), Source: "bad-input"})}

	for _, c := range badInputs() {
		t.Run(c.name, func(t *testing.T) {
			for i, hc := range c.http {
				h.checkHTTP(t, ctx, i, hc)
			}
			for i, lc := range c.lib {
				err := lc.call(ctx, lib)
				switch {
				case lc.want == nil && err != nil:
					t.Errorf("library call %d: %v; want no error and nothing found", i, err)
				case lc.want != nil && !errors.Is(err, lc.want):
					t.Errorf("library call %d: error %v; want one wrapping %q", i, err, lc.want)
				case err != nil && len(err.Error()) > 2000:
					t.Errorf("library call %d: an error of %d bytes is no clear message", i, len(err.Error()))
				}
			}
			if n := h.storedCount(t, ctx); n != 0 {
				t.Fatalf("%d events stored", n)
			}
		})
	}

	// The store survived every attempt at injection, and the system still
	// works: a good event is stored and published, and it is the only one.
	var table *string
	if err := h.direct.QueryRow(ctx, `SELECT to_regclass('event_store')::text`).Scan(&table); err != nil || table == nil {
		t.Fatalf("event_store is gone: %v", err)
	}
	good := httpCase{method: "POST", path: "/v1/events", contentType: "application/json",
		body: []byte(`{"type":"quiz.submitted","data":` + quizJSON(1) + `}`), status: http.StatusCreated}
	if status, _, body := h.request(t, ctx, good); status != http.StatusCreated {
		t.Fatalf("a good event after the bad ones: %d %s", status, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		published := h.scrape(ctx)["eventbus_relay_published_total"]
		if published == 1 {
			break
		}
		if published > 1 || time.Now().After(deadline) {
			t.Fatalf("the relay published %v events, want exactly the good one", published)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedCount counts the events in the store.
func (h *harness) storedCount(t *testing.T, ctx context.Context) int {
	t.Helper()
	var n int
	if err := h.direct.QueryRow(ctx, `SELECT count(*) FROM event_store`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// request sends one request of the table to serve.
func (h *harness) request(t *testing.T, ctx context.Context, c httpCase) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, c.method, h.serveURL()+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	switch c.auth {
	case "":
		req.Header.Set("Authorization", "Bearer "+apiSecret)
	case "none":
	default:
		req.Header.Set("Authorization", c.auth)
	}
	res, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, body
}

// checkHTTP sends c and checks the answer: the status, and a problem of the
// type wanted that says what is wrong; or, for a 200, no events.
func (h *harness) checkHTTP(t *testing.T, ctx context.Context, i int, c httpCase) {
	t.Helper()
	status, header, body := h.request(t, ctx, c)
	where := fmt.Sprintf("request %d (%s %s)", i, c.method, clipString(c.path, 80))
	if status != c.status {
		t.Errorf("%s: status %d, want %d; body %s", where, status, c.status, clipBytes(body))
		return
	}
	if c.problem == "" {
		var page struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(body, &page); err != nil || len(page.Events) != 0 {
			t.Errorf("%s: want an empty page, got %s", where, clipBytes(body))
		}
		return
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != httpapi.ProblemContentType {
		t.Errorf("%s: Content-Type %q, want %s", where, header.Get("Content-Type"), httpapi.ProblemContentType)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Errorf("%s: the problem does not parse: %v: %s", where, err, clipBytes(body))
		return
	}
	if p.Type != c.problem || p.Status != c.status || p.Title == "" || p.Detail == "" {
		t.Errorf("%s: problem %+v, want type %s with a title and a detail", where, p, c.problem)
	}
	if len(body) > 4096 {
		t.Errorf("%s: a problem of %d bytes echoes too much of the input", where, len(body))
	}
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func quizJSON(score int) string {
	return fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":%d}`, uuid.NewString(), uuid.NewString(), score)
}

// nested returns depth levels of arrays: [[[...]]].
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// post is a POST /v1/events of body as JSON, and the answer it must get.
func post(body string, status int, problem string) httpCase {
	return httpCase{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(body), status: status, problem: problem}
}

// get is a GET of path, and the answer it must get.
func get(path string, status int, problem string) httpCase {
	return httpCase{method: "GET", path: path, status: status, problem: problem}
}

// dispatchRaw dispatches one raw draft of typ with data through the bus.
func dispatchRaw(typ, data string, opts ...func(*event.Draft)) func(context.Context, *library) error {
	return func(ctx context.Context, l *library) error {
		d := event.Draft{Type: typ, Data: json.RawMessage(data)}
		for _, o := range opts {
			o(&d)
		}
		_, err := l.bus.Append(ctx, []event.Draft{d})
		return err
	}
}

// inTx dispatches inside a business transaction, as a service does, and
// rolls it back.
func inTx(typ, data string) func(context.Context, *library) error {
	return func(ctx context.Context, l *library) error {
		tx, err := l.store.Pool().Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = l.bus.AppendTx(ctx, tx, []event.Draft{{Type: typ, Data: json.RawMessage(data)}})
		return err
	}
}

// readFinds reads with f and fails unless it finds nothing.
func readFinds(f store.Filter) func(context.Context, *library) error {
	return func(ctx context.Context, l *library) error {
		page, err := l.store.Read(ctx, f)
		if err != nil {
			return err
		}
		if len(page.Events) != 0 {
			return fmt.Errorf("found %d events", len(page.Events))
		}
		if n, err := l.store.Count(ctx, f); err != nil || n != 0 {
			return fmt.Errorf("count %d, %v", n, err)
		}
		return nil
	}
}

func badInputs() []badInput {
	quiz := edupulse.TypeQuizSubmitted
	valid := quizJSON(50)
	sqlType := "quiz.submitted'; DROP TABLE event_store; --"
	sqlText := "x' OR '1'='1'; DROP TABLE event_store; --"
	esc := url.QueryEscape
	return []badInput{
		{
			name: "malformed JSON",
			http: []httpCase{
				post(`{"type":"quiz.submitted","data":`, 400, httpapi.ProblemMalformedRequest),
				post(`{"type":"quiz.submitted","data":{}}}`, 400, httpapi.ProblemMalformedRequest),
				post(``, 400, httpapi.ProblemMalformedRequest),
				post(`null`, 400, httpapi.ProblemInvalidEvent),
				post(`[{"type":"quiz.submitted"}]`, 400, httpapi.ProblemMalformedRequest),
				post(`{"events":[{"type":"quiz.submitted","data":`+valid+`},{"type":"quiz.submitted","data":{"quiz_id":}}]}`, 400, httpapi.ProblemMalformedRequest),
			},
			lib: []libCase{
				{dispatchRaw(quiz, `{"quiz_id":`), eventbus.ErrInvalid},
				{dispatchRaw(quiz, valid+`}`), eventbus.ErrInvalid},
				{inTx(quiz, `not json`), eventbus.ErrInvalid},
			},
		},
		{
			name: "wrong content type",
			http: []httpCase{
				{method: "POST", path: "/v1/events", contentType: "text/plain", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), status: 415, problem: httpapi.ProblemUnsupportedMediaType},
				{method: "POST", path: "/v1/events", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), status: 415, problem: httpapi.ProblemUnsupportedMediaType},
				{method: "POST", path: "/v1/events", contentType: "application/json; charset=latin1", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), status: 415, problem: httpapi.ProblemUnsupportedMediaType},
				{method: "POST", path: "/v1/events", contentType: "application/x-www-form-urlencoded", body: []byte(`type=quiz.submitted`), status: 415, problem: httpapi.ProblemUnsupportedMediaType},
			},
			lib: []libCase{
				// What a consumer gets from a message that is not CloudEvents JSON.
				{func(context.Context, *library) error {
					_, err := broker.DecodeMessage(broker.Message{ContentType: "text/plain", Body: []byte(valid)})
					return err
				}, event.ErrMalformed},
			},
		},
		{
			name: "huge body",
			http: []httpCase{
				post(`{"type":"quiz.submitted","data":{"pad":"`+strings.Repeat("x", 2<<20)+`"}}`, 413, httpapi.ProblemTooLarge),
				post(`{"type":"quiz.submitted","data":{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"pad":"`+strings.Repeat("x", 300<<10)+`"}}`, 413, httpapi.ProblemTooLarge),
			},
			lib: []libCase{
				{dispatchRaw(quiz, `{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"pad":"`+strings.Repeat("x", 300<<10)+`"}`), eventbus.ErrTooLarge},
				{func(ctx context.Context, l *library) error {
					drafts := make([]event.Draft, store.MaxBatch+1)
					for i := range drafts {
						drafts[i] = event.Draft{Type: quiz, Data: json.RawMessage(valid)}
					}
					_, err := l.bus.Append(ctx, drafts)
					return err
				}, eventbus.ErrInvalid},
			},
		},
		{
			name: "deep nesting",
			http: []httpCase{
				// Deeper than any JSON decoder here goes.
				post(`{"type":"quiz.submitted","data":`+nested(10000)+`}`, 400, httpapi.ProblemMalformedRequest),
				post(`{"type":"quiz.submitted","data":{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(10000)+`}}`, 400, httpapi.ProblemMalformedRequest),
				// As deep as a body can be: its data would be stored, and
				// go out in an envelope deeper than most decoders go.
				post(`{"type":"quiz.submitted","data":{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(9998)+`}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"events":[{"type":"quiz.submitted","data":`+valid+`},{"type":"quiz.submitted","data":{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(2000)+`}}]}`, 400, httpapi.ProblemInvalidEvent),
			},
			lib: []libCase{
				{dispatchRaw(quiz, nested(10000)), eventbus.ErrInvalid},
				{dispatchRaw(quiz, `{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(10000)+`}`), eventbus.ErrInvalid},
				// As deep as Go's decoder goes: the envelope around it on
				// the way to a consumer would be one level too deep for it.
				{dispatchRaw(quiz, `{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(9999)+`}`), eventbus.ErrInvalid},
				{inTx(quiz, `{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":1,"x":`+nested(2000)+`}`), eventbus.ErrInvalid},
			},
		},
		{
			name: "invalid UTF-8",
			http: []httpCase{
				post("{\"type\":\"quiz.submitted\",\"data\":{\"quiz_id\":\"\xff\xfe\"}}", 400, httpapi.ProblemMalformedRequest),
				post("{\"type\":\"quiz.submitted\",\"subject\":\"learner-\xc3\",\"data\":"+valid+"}", 400, httpapi.ProblemMalformedRequest),
			},
			lib: []libCase{
				{dispatchRaw(quiz, "{\"quiz_id\":\""+uuid.NewString()+"\",\"learner_id\":\""+uuid.NewString()+"\",\"score_raw\":1,\"note\":\"\xff\"}"), eventbus.ErrInvalid},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Subject = "learner-\xc3" }), eventbus.ErrInvalid},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "svc-\xff" }), eventbus.ErrInvalid},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Subject = "learner-\x00" }), eventbus.ErrInvalid},
			},
		},
		{
			// DESIGN "Input limits": what the broker or the CloudEvents SDKs
			// would refuse, or what decoders read differently, is refused
			// before it is stored.
			name: "input limits",
			http: []httpCase{
				post(`{"type":"quiz.submitted","source":"/`+strings.Repeat("s", 255)+`","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","source":"%zz","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","source":"quiz\tservice","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","source":"http://[::1","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","source":"/quiz\r\nX-Evil: 1","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"`+strings.Repeat("q", 256)+`","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","correlation_id":"`+strings.Repeat("c", 256)+`","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","subject":"learner-\ud800","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","subject":" ","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.exploded","type":"quiz.submitted","data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+strings.TrimSuffix(valid, "}")+`,"score_raw":99}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+strings.TrimSuffix(valid, "}")+`,"note":"\udc00"}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"events":[{"type":"quiz.submitted","data":`+valid+`},{"type":"quiz.submitted","data":`+strings.TrimSuffix(valid, "}")+`,"x":{"y":1,"y":2}}}]}`, 400, httpapi.ProblemInvalidEvent),
			},
			lib: []libCase{
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "/" + strings.Repeat("s", 255) }), event.ErrTooLong},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "%zz" }), event.ErrNotURIReference},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "quiz\tservice" }), event.ErrNotURIReference},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "http://[::1" }), event.ErrNotURIReference},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Source = "/quiz\r\nX-Evil: 1" }), event.ErrNotURIReference},
				{dispatchRaw(strings.Repeat("q", 256), valid), event.ErrTooLong},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Subject = " \t" }), event.ErrEmpty},
				{dispatchRaw(quiz, strings.TrimSuffix(valid, "}")+`,"score_raw":99}`), event.ErrDuplicateKey},
				{dispatchRaw(quiz, strings.TrimSuffix(valid, "}")+`,"note":"\ud800"}`), event.ErrLoneSurrogate},
				{inTx(quiz, strings.TrimSuffix(valid, "}")+`,"x":[{"y":1,"y":2}]}`), event.ErrDuplicateKey},
				{func(ctx context.Context, l *library) error {
					_, err := l.bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New()}, eventbus.Source("/"+strings.Repeat("s", 255)))
					var fe *eventbus.FieldError
					if errors.As(err, &fe) && fe.Field != "source" {
						return fmt.Errorf("the error names %q, not source: %w", fe.Field, err)
					}
					return err
				}, event.ErrTooLong},
			},
		},
		{
			name: "wrong field types",
			http: []httpCase{
				post(`{"type":5,"data":`+valid+`}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+valid+`,"expected_version":"3","subject":"s"}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+valid+`,"id":42}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+valid+`,"id":"not-a-uuid"}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":"ninety"}}`, 422, httpapi.ProblemInvalidData),
				post(`{"type":"quiz.submitted","data":"a string"}`, 422, httpapi.ProblemInvalidData),
				post(`{"events":{"type":"quiz.submitted"}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.submitted","data":`+valid+`,"expected_version":-1,"subject":"s"}`, 400, httpapi.ProblemInvalidEvent),
			},
			lib: []libCase{
				{dispatchRaw(quiz, `{"quiz_id":"`+uuid.NewString()+`","learner_id":"`+uuid.NewString()+`","score_raw":"ninety"}`), eventbus.ErrInvalid},
				{dispatchRaw(quiz, `"a string"`), eventbus.ErrInvalid},
				{dispatchRaw(quiz, `{"quiz_id":1,"learner_id":2,"score_raw":3}`), eventbus.ErrInvalid},
				{dispatchRaw(quiz, valid, func(d *event.Draft) { d.Subject, d.ExpectedVersion = "s", event.Expect(-1) }), eventbus.ErrInvalid},
				{func(ctx context.Context, l *library) error {
					_, err := l.bus.Dispatch(ctx, edupulse.QuizSubmitted{}) // nil UUIDs
					return err
				}, eventbus.ErrInvalid},
			},
		},
		{
			name: "unknown types",
			http: []httpCase{
				post(`{"type":"quiz.exploded","data":{}}`, 422, httpapi.ProblemUnknownType),
				post(`{"events":[{"type":"quiz.submitted","data":`+valid+`},{"type":"quiz.exploded","data":{}}]}`, 422, httpapi.ProblemUnknownType),
				post(`{"type":"quiz submitted!","data":{}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"quiz.*","data":{}}`, 400, httpapi.ProblemInvalidEvent),
				post(`{"type":"","data":{}}`, 400, httpapi.ProblemInvalidEvent),
			},
			lib: []libCase{
				{dispatchRaw("quiz.exploded", `{}`), eventbus.ErrUnknownType},
				{inTx("quiz.exploded", `{}`), eventbus.ErrUnknownType},
				{dispatchRaw("quiz submitted!", `{}`), eventbus.ErrInvalid},
				{dispatchRaw("quiz.#", `{}`), eventbus.ErrInvalid},
			},
		},
		{
			name: "SQL meta-characters in filters",
			http: []httpCase{
				get("/v1/events?type="+esc(sqlType), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?subject="+esc(sqlText), 200, ""),
				get("/v1/events?correlation_id="+esc(sqlText), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?after="+esc(sqlText), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?since="+esc("2026-01-01'; DROP TABLE event_store; --"), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?until="+esc("now()"), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?limit="+esc("1; DROP TABLE event_store"), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?"+esc("type'; --")+"=x", 400, httpapi.ProblemInvalidParameter),
				get("/v1/streams/"+url.PathEscape(sqlText), 200, ""),
				get("/v1/streams/x?from="+esc("1 OR 1=1"), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events/"+url.PathEscape(sqlText), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?subject="+esc("a\x00b"), 400, httpapi.ProblemInvalidParameter),
			},
			lib: []libCase{
				{readFinds(store.Filter{Types: []string{sqlType}}), nil},
				{readFinds(store.Filter{Subject: sqlText}), nil},
				{readFinds(store.Filter{Types: []string{"a", sqlText}, Subject: sqlText, CorrelationID: uuid.New()}), nil},
				{func(ctx context.Context, l *library) error {
					events, err := l.store.ReadStream(ctx, sqlText, 1, 10)
					if err == nil && len(events) > 0 {
						return fmt.Errorf("found %d events", len(events))
					}
					return err
				}, nil},
				{func(context.Context, *library) error { _, err := store.ParseCursor(sqlText); return err }, store.ErrBadCursor},
				{readFinds(store.Filter{Subject: "a\x00b"}), store.ErrBadFilter},
				{readFinds(store.Filter{Types: []string{"quiz.submitted\xff"}}), store.ErrBadFilter},
			},
		},
		{
			name: "negative or huge limit",
			http: []httpCase{
				get("/v1/events?limit=-1", 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?limit=0", 400, httpapi.ProblemInvalidParameter),
				get(fmt.Sprintf("/v1/events?limit=%d", store.MaxLimit+1), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?limit=99999999999999999999999", 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?limit=1e3", 400, httpapi.ProblemInvalidParameter),
				get("/v1/streams/s?limit=-5", 400, httpapi.ProblemInvalidParameter),
				get("/v1/streams/s?from=-1", 400, httpapi.ProblemInvalidParameter),
			},
			lib: []libCase{
				// The library's filters clamp a limit out of range
				// (store.Filter.EffectiveLimit): no error, and no
				// unbounded read.
				{readFinds(store.Filter{Limit: -1}), nil},
				{readFinds(store.Filter{Limit: math.MaxInt}), nil},
				{func(ctx context.Context, l *library) error {
					_, err := l.store.ReadStream(ctx, "s", -1, -5)
					return err
				}, nil},
			},
		},
		{
			name: "bad cursor",
			http: []httpCase{
				get("/v1/events?after=AAAA", 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?after="+esc("!!!"), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?after="+strings.Repeat("A", 65), 400, httpapi.ProblemInvalidParameter),
				get("/v1/events?after="+esc(store.Cursor{Order: 1, Position: 1}.String()+"x"), 400, httpapi.ProblemInvalidParameter),
			},
			lib: []libCase{
				{func(context.Context, *library) error { _, err := store.ParseCursor("AAAA"); return err }, store.ErrBadCursor},
				{func(context.Context, *library) error {
					_, err := store.ParseCursor(strings.Repeat("A", 65))
					return err
				}, store.ErrBadCursor},
				{func(context.Context, *library) error {
					var c store.Cursor
					return c.UnmarshalText([]byte("not a cursor"))
				}, store.ErrBadCursor},
				// A cursor built by hand past any event reads nothing.
				{readFinds(store.Filter{After: store.Cursor{Order: math.MaxInt64, Position: math.MaxInt64}}), nil},
			},
		},
		{
			name: "token in the wrong format",
			http: []httpCase{
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "none", status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "Bearer", status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "Basic Y2hhb3M6c2VjcmV0", status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "Bearer " + apiSecret + " extra", status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "Bearer " + strings.Repeat("x", 600), status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "POST", path: "/v1/events", contentType: "application/json", body: []byte(`{"type":"quiz.submitted","data":` + valid + `}`), auth: "Bearer ' OR '1'='1", status: 401, problem: httpapi.ProblemUnauthorized},
				{method: "GET", path: "/v1/events", auth: "Bearer wrong-token-of-good-form", status: 401, problem: httpapi.ProblemUnauthorized},
			},
			lib: []libCase{
				{func(context.Context, *library) error { _, err := auth.ParseTokens("no-colons-at-all"); return err }, auth.ErrBadToken},
				{func(context.Context, *library) error { _, err := auth.ParseTokens("ci:short:publish"); return err }, auth.ErrBadToken},
				{func(context.Context, *library) error {
					_, err := auth.ParseTokens("ci:a-long-enough-secret-1:root")
					return err
				}, auth.ErrBadToken},
				{func(context.Context, *library) error {
					_, err := config.Load(func(k string) (string, bool) {
						if k == config.EnvAPITokens {
							return "ci:has spaces in it 12345:publish", true
						}
						return "", false
					}, nil)
					return err
				}, config.ErrInvalid},
			},
		},
	}
}
