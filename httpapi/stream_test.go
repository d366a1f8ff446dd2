package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
)

// streamRig is the HTTP API over one of the two stores, for the stream's
// tests.
type streamRig struct {
	t       testing.TB
	url     string
	store   store.Store
	handler http.Handler
	client  *http.Client
}

// onBothStores runs test against the API on PostgreSQL and on SQLite.
func onBothStores(t *testing.T, cfg func(*httpapi.Config), test func(t *testing.T, rig *streamRig)) {
	t.Run("postgres", func(t *testing.T) { test(t, newPostgresRig(t, cfg)) })
	t.Run("sqlite", func(t *testing.T) { test(t, newSQLiteRig(t, cfg)) })
}

// newPostgresRig is the API over a PostgreSQL store in a schema of the
// test's own (the harness's, with a handler of the rig's own).
func newPostgresRig(tb testing.TB, cfg func(*httpapi.Config)) *streamRig {
	var handler http.Handler
	h := newHarness(tb, harnessOption{config: func(c *httpapi.Config) {
		if cfg != nil {
			cfg(c)
		}
		own := *c
		own.Metrics = prometheus.NewRegistry() // the harness's handler registers in c's
		handler = mustHandler(tb, own)
	}, server: func(s *http.Server) { s.Handler = handler }})
	return &streamRig{t: tb, url: h.srv.URL, store: h.store, handler: handler, client: h.srv.Client()}
}

func mustHandler(t testing.TB, cfg httpapi.Config) http.Handler {
	t.Helper()
	h, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newSQLiteRig is the API over an embedded store in the test's directory.
func newSQLiteRig(t testing.TB, cfg func(*httpapi.Config)) *streamRig {
	t.Helper()
	s, err := sqlite.Open(context.Background(), t.TempDir()+"/events.db", sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.ParseTokens(tokenList)
	if err != nil {
		t.Fatal(err)
	}
	c := httpapi.Config{
		Bus:    eventbus.New(s, eventbus.Config{Registry: edupulse.Registry(), Source: "http-test"}),
		Reader: s, Tokens: tokens, Logger: slog.New(slog.DiscardHandler),
	}
	if cfg != nil {
		cfg(&c)
	}
	h := mustHandler(t, c)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &streamRig{t: t, url: srv.URL, store: s, handler: h, client: srv.Client()}
}

// publish stores n quiz.submitted events in subject, one request each,
// and returns their ids once readers see them.
func (r *streamRig) publish(subject string, n int) []string {
	r.t.Helper()
	ids := r.publishUnsettled(subject, n)
	testenv.Settle(r.t, r.store)
	return ids
}

// publishUnsettled is publish without the wait: it may run on a goroutine
// of its own (it reports failures with Error).
func (r *streamRig) publishUnsettled(subject string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		body := fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","subject":%q,"source":"stream-test","data":%s}`, ids[i], subject, quizData(i))
		req, _ := http.NewRequest("POST", r.url+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+publishSecret)
		req.Header.Set("Content-Type", "application/json")
		res, err := r.client.Do(req)
		if err != nil {
			r.t.Error(err)
			return ids[:i]
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 201 {
			r.t.Errorf("publish: status %d", res.StatusCode)
			return ids[:i]
		}
	}
	return ids
}

// sseMessage is one message of a stream: an event, or a comment.
type sseMessage struct {
	id, event, data, comment string
}

// sseStream is an open stream read by the test.
type sseStream struct {
	t      testing.TB
	res    *http.Response
	cancel context.CancelFunc
	msgs   chan sseMessage
	done   chan struct{}
}

// openStream opens GET /v1/events/stream?query with the read token and
// the given Last-Event-ID (none when empty). It fails the test unless the
// answer is 200 text/event-stream.
func (r *streamRig) openStream(query, lastEventID string) *sseStream {
	r.t.Helper()
	res, cancel := r.streamRequest(query, readSecret, lastEventID)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		r.t.Fatalf("stream: status %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	s := &sseStream{t: r.t, res: res, cancel: cancel, msgs: make(chan sseMessage, 1024), done: make(chan struct{})}
	go s.read()
	r.t.Cleanup(s.close)
	return s
}

func (r *streamRig) streamRequest(query, token, lastEventID string) (*http.Response, context.CancelFunc) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", r.url+"/v1/events/stream?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := r.client.Do(req)
	if err != nil {
		cancel()
		r.t.Fatal(err)
	}
	return res, cancel
}

// read parses the stream into messages, as the SSE specification does.
func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.msgs)
	br := bufio.NewReader(s.res.Body)
	var m sseMessage
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if m != (sseMessage{}) {
				s.msgs <- m
			}
			m = sseMessage{}
		case strings.HasPrefix(line, ":"):
			m.comment = strings.TrimPrefix(strings.TrimPrefix(line, ":"), " ")
			if m.comment == "" {
				m.comment = "(heartbeat)"
			}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				m.id = value
			case "event":
				m.event = value
			case "data":
				m.data = value
			}
		}
	}
}

func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
	<-s.done
}

// next returns the next event message, skipping comments; it fails the
// test after a while without one, or when the stream ends.
func (s *sseStream) next() sseMessage {
	s.t.Helper()
	for {
		m := s.nextMessage()
		if m.comment == "" {
			return m
		}
	}
}

// nextMessage returns the next message, comments included.
func (s *sseStream) nextMessage() sseMessage {
	s.t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			s.t.Fatal("the stream ended")
		}
		return m
	case <-timer.C:
		s.t.Fatal("no message on the stream within 30s")
	}
	return sseMessage{}
}

// events reads n events and returns their CloudEvents ids, checking that
// each id: is the event's cursor as GET /v1/events pages by.
func (s *sseStream) events(n int) ([]string, []string) {
	s.t.Helper()
	ids, cursors := make([]string, n), make([]string, n)
	for i := range n {
		m := s.next()
		var ce struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(m.data), &ce); err != nil {
			s.t.Fatalf("data %q: %v", m.data, err)
		}
		if m.event != ce.Type {
			s.t.Fatalf("event: %q, the data's type %q", m.event, ce.Type)
		}
		if _, err := store.ParseCursor(m.id); err != nil || m.id == "" {
			s.t.Fatalf("id: %q is not a cursor: %v", m.id, err)
		}
		ids[i], cursors[i] = ce.ID, m.id
	}
	return ids, cursors
}

// openedAtLiveEnd waits until the stream has joined the live end: its
// first comment comes once it has.
func (s *sseStream) opened() *sseStream {
	s.t.Helper()
	if m := s.nextMessage(); m.comment != "stream open" {
		s.t.Fatalf("first message %+v, want the comment \"stream open\"", m)
	}
	return s
}

func TestStreamSendsLiveEventsFromTheLiveEndWithoutACursor(t *testing.T) {
	onBothStores(t, nil, func(t *testing.T, rig *streamRig) {
		rig.publish("s-old", 2)
		st := rig.openStream("", "").opened()
		want := rig.publish("s-new", 3)
		got, _ := st.events(3)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("stream sent %v, want the new events %v", got, want)
		}
	})
}

func TestStreamSendsTheBacklogAfterTheCursorThenLiveEvents(t *testing.T) {
	onBothStores(t, nil, func(t *testing.T, rig *streamRig) {
		old := rig.publish("s", 4)
		page := readPage(t, rig, "limit=1")
		st := rig.openStream("after="+page.Next, "")
		got, cursors := st.events(3)
		if strings.Join(got, ",") != strings.Join(old[1:], ",") {
			t.Fatalf("backlog %v, want %v", got, old[1:])
		}
		// The ids are the cursors GET /v1/events pages by.
		if next := readPage(t, rig, "limit=2&after="+page.Next).Next; next != cursors[1] {
			t.Fatalf("id: of the second event %q, GET /v1/events's next %q", cursors[1], next)
		}
		live := rig.publish("s", 2)
		if got, _ := st.events(2); strings.Join(got, ",") != strings.Join(live, ",") {
			t.Fatalf("live %v, want %v", got, live)
		}
	})
}

// TestStreamResumesWithLastEventIDWithoutGapsOrRepeats reconnects again and
// again, with the last id: seen, while events are being published, and
// checks that the streams together sent every event once, in order.
func TestStreamResumesWithLastEventIDWithoutGapsOrRepeats(t *testing.T) {
	onBothStores(t, nil, func(t *testing.T, rig *streamRig) {
		const total = 60
		st := rig.openStream("", "").opened()
		var wg sync.WaitGroup
		wg.Add(1)
		var want []string
		go func() {
			defer wg.Done()
			want = rig.publishUnsettled("r", total)
		}()
		var got []string
		wrongAfter := ""
		for {
			ids, cursors := st.events(min(7, total-len(got)))
			got = append(got, ids...)
			st.close()
			if len(got) == total {
				break
			}
			if wrongAfter == "" {
				wrongAfter = cursors[0]
			}
			// Last-Event-ID wins over after=.
			st = rig.openStream("after="+wrongAfter, cursors[len(cursors)-1])
		}
		wg.Wait()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("resumed streams sent\n%v\nwant\n%v", got, want)
		}
	})
}

func TestStreamFiltersAsGetEvents(t *testing.T) {
	onBothStores(t, nil, func(t *testing.T, rig *streamRig) {
		a := rig.publish("subject-a", 2)
		rig.publish("subject-b", 2)
		st := rig.openStream("subject=subject-a&after="+readPage(t, rig, "limit=1").Next, "")
		if got, _ := st.events(1); got[0] != a[1] {
			t.Fatalf("backlog %v, want %v", got, a[1:])
		}
		rig.publish("subject-b", 3)
		more := rig.publish("subject-a", 1)
		if got, _ := st.events(1); got[0] != more[0] {
			t.Fatalf("live %v, want only subject-a's %v", got, more)
		}
	})
}

func TestStreamRefusesBadInputAndMissingTokens(t *testing.T) {
	onBothStores(t, nil, func(t *testing.T, rig *streamRig) {
		for _, tc := range []struct {
			query, token, lastID string
			status               int
		}{
			{"", "", "", 401},
			{"", publishSecret, "", 403},
			{"limit=5", readSecret, "", 400},
			{"after=nonsense", readSecret, "", 400},
			{"", readSecret, "nonsense", 400},
			{"type=Not%20A%20Type", readSecret, "", 400},
		} {
			res, cancel := rig.streamRequest(tc.query, tc.token, tc.lastID)
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			cancel()
			if res.StatusCode != tc.status || res.Header.Get("Content-Type") != httpapi.ProblemContentType {
				t.Errorf("%+v: status %d %s, want %d problem: %s", tc, res.StatusCode, res.Header.Get("Content-Type"), tc.status, b)
			}
		}
	})
}

func TestStreamSendsHeartbeatsAndEndsWhenTheServerStops(t *testing.T) {
	onBothStores(t, func(c *httpapi.Config) { c.Heartbeat = 20 * time.Millisecond }, func(t *testing.T, rig *streamRig) {
		st := rig.openStream("", "").opened()
		if m := st.nextMessage(); m.comment != "(heartbeat)" {
			t.Fatalf("message %+v, want a heartbeat", m)
		}
		httpapi.StopStreams(rig.handler)
		for {
			m := st.nextMessage()
			if strings.Contains(m.comment, "server is stopping") {
				break
			}
		}
		if m, ok := <-st.msgs; ok {
			t.Fatalf("after the final comment: %+v", m)
		}
		res, cancel := rig.streamRequest("", readSecret, "")
		res.Body.Close()
		cancel()
		if res.StatusCode != 503 {
			t.Fatalf("a stream after the stop: status %d, want 503", res.StatusCode)
		}
	})
}

type pageAnswer struct {
	Next string `json:"next"`
}

func readPage(t *testing.T, rig *streamRig, query string) pageAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", rig.url+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+readSecret)
	res, err := rig.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var p pageAnswer
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /v1/events?%s: %d %v", query, res.StatusCode, err)
	}
	return p
}
