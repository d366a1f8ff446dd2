package erasure_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/erasure"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
)

// noteWritten is a type that declares no personal data: its producers say
// per event which fields are personal.
type noteWritten struct {
	Author string `json:"author"`
	Body   string `json:"body"`
}

func (noteWritten) EventType() string { return "note.written" }

type backend struct {
	name string
	cfg  func(t testing.TB) config.Config
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB) config.Config {
			return config.Config{DataDir: t.TempDir(), Exchange: broker.DefaultEventsExchange}
		}},
		{"postgres", func(t testing.TB) config.Config {
			return config.Config{DatabaseURL: testenv.PostgresSchema(t), DataDir: t.TempDir(), Exchange: broker.DefaultEventsExchange}
		}},
	}
}

func registry(t testing.TB) *event.Registry {
	reg := edupulse.Registry()
	if err := event.Register[noteWritten](reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func open(t testing.TB, cfg config.Config, storeOnly bool) *service.Service {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	svc, err := service.Open(ctx, cfg, service.Config{Migrate: true, StoreOnly: storeOnly, Registry: registry(t),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

// rawData returns the data column of every event_store row, as stored.
func rawData(t *testing.T, svc *service.Service) []string {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	var out []string
	if pg, ok := svc.Postgres(); ok {
		rows, err := pg.Pool().Query(ctx, `SELECT data::text FROM event_store ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	lite, _ := svc.SQLite()
	rows, err := lite.DB().QueryContext(ctx, `SELECT data FROM event_store ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// inTx runs fn in a transaction of the service's store, and commits it, or
// rolls it back when commit is false or fn fails.
func inTx(ctx context.Context, svc *service.Service, commit bool, fn func(service.Tx) error) error {
	if pg, ok := svc.Postgres(); ok {
		tx, err := pg.Pool().Begin(ctx)
		if err != nil {
			return err
		}
		if err := fn(service.PostgresTx(tx)); err != nil || !commit {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		return tx.Commit(ctx)
	}
	lite, _ := svc.SQLite()
	tx, err := lite.DB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(service.SQLiteTx(tx)); err != nil || !commit {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func readAll(t *testing.T, s store.Reader) []event.Envelope {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	var out []event.Envelope
	var after store.Cursor
	for {
		page, err := s.Read(ctx, store.Filter{After: after, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if len(page.Events) < 500 {
			return out
		}
		after = page.Next
	}
}

func dataOf(t *testing.T, env event.Envelope) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env.Data, &m); err != nil {
		t.Fatalf("event %s: %v: %s", env.ID, err, env.Data)
	}
	return m
}

func post(t *testing.T, h http.Handler, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestPersonalFieldsNeverStoredInPlaintext appends personal data every way
// there is (Dispatch, DispatchTx, Append, AppendTx, POST /v1/events with a
// type's declaration and with a per-event "personal"), scans the raw rows
// for it, and reads it back through the service.
func TestPersonalFieldsNeverStoredInPlaintext(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			svc := open(t, b.cfg(t), false)
			ctx := testenv.Context(t, time.Minute)
			learner, recipient := uuid.New(), uuid.New()
			secrets := map[string]bool{}
			if _, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learner, ScoreRaw: 424242}); err != nil {
				t.Fatal(err)
			}
			secrets["424242"] = true
			err := inTx(ctx, svc, true, func(tx service.Tx) error {
				_, err := svc.Bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: recipient, Reason: "secret-reason-dispatchtx"})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			secrets["secret-reason-dispatchtx"] = true
			quiz := fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":515151}`, uuid.New(), learner)
			if _, err := svc.Bus.Append(ctx, []event.Draft{{Type: edupulse.TypeQuizSubmitted, Data: json.RawMessage(quiz)}}); err != nil {
				t.Fatal(err)
			}
			secrets["515151"] = true
			err = inTx(ctx, svc, true, func(tx service.Tx) error {
				badge := fmt.Sprintf(`{"badge_id":%q,"recipient_id":%q,"reason":"secret-reason-appendtx"}`, uuid.New(), uuid.New())
				_, err := svc.Bus.AppendTx(ctx, tx, []event.Draft{{Type: edupulse.TypeBadgeAwarded, Data: json.RawMessage(badge)}})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			secrets["secret-reason-appendtx"] = true
			h, err := svc.Handler()
			if err != nil {
				t.Fatal(err)
			}
			code, body := post(t, h, "/v1/events", fmt.Sprintf(`{"type":"quiz.submitted","data":{"quiz_id":%q,"learner_id":%q,"score_raw":616161}}`, uuid.New(), learner))
			if code != http.StatusCreated || !strings.Contains(body, `"score_raw":616161`) {
				t.Fatalf("POST quiz: %d %s", code, body)
			}
			secrets["616161"] = true
			code, body = post(t, h, "/v1/events", `{"type":"note.written","data":{"author":"ann","body":"secret-note-body"},
				"personal":{"data_subject":"ann","fields":["body"]}}`)
			if code != http.StatusCreated || !strings.Contains(body, `"body":"secret-note-body"`) {
				t.Fatalf("POST note: %d %s", code, body)
			}
			secrets["secret-note-body"] = true

			rows := rawData(t, svc)
			if len(rows) != 6 {
				t.Fatalf("%d rows, want 6", len(rows))
			}
			for _, row := range rows {
				for s := range secrets {
					if strings.Contains(row, s) {
						t.Errorf("event_store holds %q in plaintext: %s", s, row)
					}
				}
				if !strings.Contains(row, `"`+event.SealedKey+`"`) {
					t.Errorf("row without sealed personal data: %s", row)
				}
			}
			found := map[string]bool{}
			testenv.Settle(t, svc.Store)
			for _, env := range readAll(t, svc.Store) {
				if env.Erased {
					t.Errorf("event %s reads erased", env.ID)
				}
				if strings.Contains(string(env.Data), event.SealedKey) {
					t.Errorf("event %s reads with the sealed member: %s", env.ID, env.Data)
				}
				for s := range secrets {
					if strings.Contains(string(env.Data), s) {
						found[s] = true
					}
				}
			}
			if len(found) != len(secrets) {
				t.Errorf("read back %v of %v", found, secrets)
			}
		})
	}
}

// sse reads an event stream until it has n messages, and returns their
// data lines.
func sse(t *testing.T, base, query string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(out) < n && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			out = append(out, strings.TrimSpace(data))
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d of %d messages: %v", len(out), n, sc.Err())
	}
	return out
}

// collect takes n messages from queue q.
func collect(t *testing.T, b broker.Broker, q string, n int) []broker.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := b.Consume(ctx, q, broker.ConsumeOptions{Prefetch: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	var out []broker.Delivery
	for len(out) < n {
		select {
		case d, ok := <-sub.Deliveries():
			if !ok {
				t.Fatalf("subscription ended after %d of %d messages: %v", len(out), n, sub.Err())
			}
			_ = d.Ack()
			out = append(out, d)
		case <-ctx.Done():
			t.Fatalf("%d of %d messages on %s", len(out), n, q)
		}
	}
	return out
}

// checkErased asserts an erased quiz or badge as a reader sees it.
func checkErased(t *testing.T, where string, env event.Envelope, subject string) {
	t.Helper()
	data := dataOf(t, env)
	field := "score_raw"
	if env.Type == edupulse.TypeBadgeAwarded {
		field = "reason"
	}
	v, present := data[field]
	if !present || v != nil || !env.Erased {
		t.Errorf("%s: event %s of erased %s: %s = %v (present %v), erased %v; want null, present, erased", where, env.ID, subject, field, v, present, env.Erased)
	}
}

// TestErasedFieldsReadAsNullEverywhere erases a learner and checks every
// way out: the store's reads, GET /v1/events, /v1/events/{id},
// /v1/streams, the live stream, the relay's publishes and a replay.
func TestErasedFieldsReadAsNullEverywhere(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			svc := open(t, b.cfg(t), false)
			ctx := testenv.Context(t, 2*time.Minute)
			const q = "erasure-test"
			if err := svc.Broker.DeclareExchange(ctx, svc.Config.Exchange); err != nil {
				t.Fatal(err)
			}
			if err := svc.Broker.DeclareQueue(ctx, broker.QueueSpec{Name: q, Bindings: []broker.Binding{{Exchange: svc.Config.Exchange, Pattern: "#"}}}); err != nil {
				t.Fatal(err)
			}
			a, other := uuid.New(), uuid.New()
			stream := "learner-" + a.String()
			first, err := svc.Bus.Dispatch(ctx, edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "Fractions"})
			if err != nil {
				t.Fatal(err)
			}
			qa, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: a, ScoreRaw: 77}, eventbus.Subject(stream))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Bus.Dispatch(ctx, edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: a, Reason: "for a"}, eventbus.Subject(stream)); err != nil {
				t.Fatal(err)
			}
			qb, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: other, ScoreRaw: 88})
			if err != nil {
				t.Fatal(err)
			}
			h, err := svc.Handler()
			if err != nil {
				t.Fatal(err)
			}
			code, body := post(t, h, "/v1/data-subjects/"+a.String()+"/erase", "")
			if code != http.StatusOK {
				t.Fatalf("erase: %d %s", code, body)
			}
			var er struct {
				DataSubject string    `json:"data_subject"`
				ErasedAt    time.Time `json:"erased_at"`
			}
			if err := json.Unmarshal([]byte(body), &er); err != nil || er.DataSubject != a.String() || er.ErasedAt.IsZero() {
				t.Fatalf("erase answered %s (%v)", body, err)
			}
			code, body = post(t, h, "/v1/data-subjects/"+a.String()+"/erase", "")
			var again struct {
				ErasedAt time.Time `json:"erased_at"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(body), &again) != nil || !again.ErasedAt.Equal(er.ErasedAt) {
				t.Fatalf("erase again: %d %s; want 200 with the first erased_at %s", code, body, er.ErasedAt)
			}
			if code, body := post(t, h, "/v1/data-subjects/nobody-we-know/erase", ""); code != http.StatusOK {
				t.Fatalf("erase an unknown subject: %d %s", code, body)
			}
			// A later event of the erased learner is stored erased at once.
			late, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: a, ScoreRaw: 99}, eventbus.Subject(stream))
			if err != nil {
				t.Fatal(err)
			}
			if !late.Erased {
				t.Errorf("the event appended after the erasure was returned with its score: %s", late.Data)
			}
			for _, row := range rawData(t, svc) {
				if strings.Contains(row, `"score_raw":99`) {
					t.Errorf("the late event's score is stored: %s", row)
				}
			}

			testenv.Settle(t, svc.Store)
			all := readAll(t, svc.Store)
			if len(all) != 8 { // 5 events, 3 erasures
				t.Fatalf("%d events, want 8", len(all))
			}
			erasures := 0
			for _, env := range all {
				switch {
				case env.Type == event.TypeDataSubjectErased:
					erasures++
					var d event.DataSubjectErased
					if err := json.Unmarshal(env.Data, &d); err != nil || d.ErasedBy != "http (auth off)" {
						t.Errorf("erasure event %s: %v", env.Data, err)
					}
				case strings.Contains(string(env.Data), a.String()):
					checkErased(t, "Read", env, "a")
				default:
					if env.Erased {
						t.Errorf("event %s of nobody erased reads erased: %s", env.ID, env.Data)
					}
				}
			}
			if erasures != 3 {
				t.Errorf("%d datasubject.erased events, want 3", erasures)
			}
			got, err := svc.Store.Get(ctx, qa.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkErased(t, "Get", got, "a")
			if got, err := svc.Store.Get(ctx, qb.ID); err != nil || got.Erased || dataOf(t, got)["score_raw"] != float64(88) {
				t.Errorf("the other learner's quiz reads %s erased %v (%v)", got.Data, got.Erased, err)
			}
			streamed, err := svc.Store.ReadStream(ctx, stream, 0, 100)
			if err != nil || len(streamed) != 3 {
				t.Fatalf("stream: %d events, %v", len(streamed), err)
			}
			for _, env := range streamed {
				checkErased(t, "ReadStream", env, "a")
			}

			// The HTTP API.
			code, body = get(t, h, "/v1/events/"+qa.ID.String())
			if code != http.StatusOK || !strings.Contains(body, `"erased":true`) || !strings.Contains(body, `"score_raw":null`) {
				t.Errorf("GET /v1/events/{id}: %d %s", code, body)
			}
			code, body = get(t, h, "/v1/streams/"+url.PathEscape(stream))
			if code != http.StatusOK || strings.Count(body, `"erased":true`) != 3 || strings.Contains(body, `"for a"`) {
				t.Errorf("GET /v1/streams: %d %s", code, body)
			}
			code, body = get(t, h, "/v1/events?limit=100")
			if code != http.StatusOK || strings.Count(body, `"erased":true`) != 3 || !strings.Contains(body, `"score_raw":88`) {
				t.Errorf("GET /v1/events: %d %s", code, body)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			lines := sse(t, srv.URL, "after="+url.QueryEscape(store.CursorOf(all[0]).String()), 7)
			erasedLines := 0
			for _, l := range lines {
				if strings.Contains(l, `"erased":true`) {
					erasedLines++
					if strings.Contains(l, `"reason":"for a"`) || strings.Contains(l, `"score_raw":77`) {
						t.Errorf("live stream shows erased data: %s", l)
					}
				}
			}
			if erasedLines != 3 {
				t.Errorf("live stream: %d erased events, want 3: %v", erasedLines, lines)
			}
			_ = first

			// The relay.
			runCtx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = svc.Run(runCtx, service.RunOptions{Relay: true, ShutdownTimeout: 10 * time.Second})
			}()
			msgs := collect(t, svc.Broker, q, 8)
			stop()
			wg.Wait()
			checkMessages(t, "relay", msgs, a.String(), 3)

			// A replay of the learner's stream.
			if _, err := replay.Run(ctx, svc.Store, svc.Broker, replay.Options{Filter: store.Filter{Subject: stream}, Target: replay.Target{Queue: q}}); err != nil {
				t.Fatal(err)
			}
			checkMessages(t, "replay", collect(t, svc.Broker, q, 3), a.String(), 3)
		})
	}
}

func checkMessages(t *testing.T, where string, msgs []broker.Delivery, subject string, wantErased int) {
	t.Helper()
	erased := 0
	for _, m := range msgs {
		env, err := broker.DecodeMessage(m.Message)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if env.Type == event.TypeDataSubjectErased || !strings.Contains(string(env.Data), subject) {
			if env.Erased || m.Header(broker.HeaderErased) != "" {
				t.Errorf("%s: event %s is marked erased: %s", where, env.ID, m.Body)
			}
			continue
		}
		erased++
		checkErased(t, where, env, subject)
		if m.Header(broker.HeaderErased) != "true" {
			t.Errorf("%s: event %s lacks the %s header", where, env.ID, broker.HeaderErased)
		}
	}
	if erased != wantErased {
		t.Errorf("%s: %d erased events, want %d", where, erased, wantErased)
	}
}

// TestEraseUnderConcurrentAppends erases a learner while others append
// events for them, in transactions of the bus's own and in callers'
// transactions, some rolled back; and creates the first key of a fresh
// learner from many transactions at once, half of them rolled back. After
// it: every event of the erased learner reads erased (none readable under
// a destroyed key), and every event of the fresh learner reads (none
// unreadable without an erasure).
func TestEraseUnderConcurrentAppends(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			svc := open(t, b.cfg(t), true)
			ctx := testenv.Context(t, 2*time.Minute)
			erased, fresh := uuid.New(), uuid.New()
			const writers, each = 6, 15
			var wg sync.WaitGroup
			errs := make(chan error, writers*each*2+1)
			start := make(chan struct{})
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					<-start
					for i := 0; i < each; i++ {
						score := int32(w*1000 + i)
						var err error
						switch i % 3 {
						case 0:
							_, err = svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: erased, ScoreRaw: score})
						default:
							commit := i%3 == 1
							err = inTx(ctx, svc, commit, func(tx service.Tx) error {
								if _, err := svc.Bus.DispatchTx(ctx, tx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: erased, ScoreRaw: score}); err != nil {
									return err
								}
								_, err := svc.Bus.DispatchTx(ctx, tx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: fresh, ScoreRaw: score})
								return err
							})
						}
						if err != nil && !errors.Is(err, store.ErrTxConflict) && !errors.Is(err, store.ErrUnavailable) {
							errs <- err
						}
					}
				}(w)
			}
			close(start)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := svc.Erase(ctx, erased.String(), "test"); err != nil {
					errs <- err
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// Open the service again: nothing cached survives.
			svc2 := open(t, svc.Config, true)
			testenv.Settle(t, svc.Store)
			for _, s := range []*service.Service{svc, svc2} {
				nErased, nFresh := 0, 0
				for _, env := range readAll(t, s.Store) {
					if env.Type != edupulse.TypeQuizSubmitted {
						continue
					}
					d := dataOf(t, env)
					switch d["learner_id"] {
					case erased.String():
						nErased++
						checkErased(t, "after the erasure", env, "erased")
					case fresh.String():
						nFresh++
						if env.Erased || d["score_raw"] == nil {
							t.Errorf("event %s of a learner never erased reads erased: %s", env.ID, env.Data)
						}
					}
				}
				if nErased == 0 || nFresh == 0 {
					t.Errorf("%d events of the erased learner, %d of the fresh one", nErased, nFresh)
				}
			}
		})
	}
}

// TestBadPersonalInputIsA422 sends personal declarations that do not fit
// and checks the answer names the member at fault; nothing is stored.
func TestBadPersonalInputIsA422(t *testing.T) {
	svc := open(t, backends()[0].cfg(t), false)
	h, err := svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", event.MaxDataSubjectBytes+1)
	for _, tc := range []struct{ body, field string }{
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"a","fields":["nope"]}}`, "personal.fields[0]"},
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":42,"fields":["body"]}}`, "personal.data_subject"},
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"` + long + `","fields":["body"]}}`, "personal.data_subject"},
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"a","fields":[]}}`, "personal.fields"},
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"a","fields":"body"}}`, "personal.fields"},
		{`{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"a","fields":["body"],"x":1}}`, "personal"},
		{`{"type":"note.written","data":{"author":"a","body":"b","eventbus:sealed":{}}}`, "data.eventbus:sealed"},
		{`{"type":"quiz.submitted","data":{"quiz_id":"` + uuid.NewString() + `","learner_id":"` + uuid.NewString() + `","score_raw":1},"personal":{"data_subject":"a","fields":["score_raw"]}}`, "personal"},
		{`{"type":"datasubject.erased","data":{"data_subject":"a"}}`, "type"},
		{`{"events":[{"type":"note.written","data":{"author":"a","body":"b"}},{"type":"note.written","data":{"author":"a","body":"b"},"personal":{"data_subject":"a","fields":["x"]}}]}`, "personal.fields[0]"},
	} {
		code, body := post(t, h, "/v1/events", tc.body)
		var p struct {
			Field string `json:"field"`
		}
		_ = json.Unmarshal([]byte(body), &p)
		if code != http.StatusUnprocessableEntity || p.Field != tc.field {
			t.Errorf("%.90s:\n got %d %s\nwant 422 naming %s", tc.body, code, body, tc.field)
		}
	}
	if code, body := post(t, h, "/v1/data-subjects/"+url.PathEscape("a\x01b")+"/erase", ""); code != http.StatusUnprocessableEntity {
		t.Errorf("erase a subject with a control character: %d %s", code, body)
	}
	if rows := rawData(t, svc); len(rows) != 0 {
		t.Errorf("%d events stored from bad input", len(rows))
	}
}

// TestRotateKEK rewraps every key under a new KEK while the old one still
// reads, then reads with the new one alone.
func TestRotateKEK(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := testenv.Context(t, time.Minute)
			oldKey, _ := erasure.NewKEKText()
			newKey, _ := erasure.NewKEKText()
			cfg := b.cfg(t)
			cfg.MasterKey = oldKey
			svc := open(t, cfg, true)
			for i := 0; i < 3; i++ {
				if _, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: int32(1000 + i)}); err != nil {
					t.Fatal(err)
				}
			}
			cfg.MasterKey = newKey + "," + oldKey
			both := open(t, cfg, true)
			n, err := both.Keyring().Rotate(ctx)
			if err != nil || n != 3 {
				t.Fatalf("rotate: %d keys, %v; want 3", n, err)
			}
			if n, err := both.Keyring().Rotate(ctx); err != nil || n != 0 {
				t.Fatalf("rotate again: %d keys, %v; want 0", n, err)
			}
			cfg.MasterKey = newKey
			only := open(t, cfg, true)
			testenv.Settle(t, only.Store)
			for _, env := range readAll(t, only.Store) {
				if env.Erased || dataOf(t, env)["score_raw"] == nil {
					t.Errorf("event %s after rotation: %s", env.ID, env.Data)
				}
			}
			// The old KEK alone no longer unwraps the stored keys: a
			// process given it refuses to start rather than stall on the
			// first personal field.
			cfg.MasterKey = oldKey
			stale, err := service.Open(ctx, cfg, service.Config{Migrate: true, StoreOnly: true, Registry: registry(t),
				Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				_ = stale.Close()
			}
			if !errors.Is(err, service.ErrWrongMasterKey) {
				t.Errorf("opening with the old KEK alone after rotation: %v, want ErrWrongMasterKey", err)
			}
		})
	}
}

// TestOneLearnerWrittenTwoWaysIsOneSubject: a learner id sent in upper
// case and one sent in lower case are one data subject, and so is the id
// given to erase in either case; a lesson (a subject, nothing personal)
// makes no key.
func TestOneLearnerWrittenTwoWaysIsOneSubject(t *testing.T) {
	svc := open(t, backends()[0].cfg(t), false)
	ctx := testenv.Context(t, time.Minute)
	h, err := svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	learner := uuid.New()
	for _, id := range []string{strings.ToUpper(learner.String()), learner.String()} {
		if code, body := post(t, h, "/v1/events", fmt.Sprintf(`{"type":"quiz.submitted","data":{"quiz_id":%q,"learner_id":%q,"score_raw":5}}`, uuid.New(), id)); code != http.StatusCreated {
			t.Fatalf("POST: %d %s", code, body)
		}
	}
	if _, err := svc.Bus.Dispatch(ctx, edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "T"}); err != nil {
		t.Fatal(err)
	}
	lite, _ := svc.SQLite()
	var keys int
	if err := lite.DB().QueryRowContext(ctx, `SELECT count(*) FROM eventbus_subject_keys`).Scan(&keys); err != nil || keys != 1 {
		t.Fatalf("%d subject keys (%v), want 1: the learner's", keys, err)
	}
	if code, body := post(t, h, "/v1/data-subjects/"+strings.ToUpper(learner.String())+"/erase", ""); code != http.StatusOK || !strings.Contains(body, learner.String()) {
		t.Fatalf("erase: %d %s", code, body)
	}
	for _, env := range readAll(t, svc.Store) {
		if env.Type == edupulse.TypeQuizSubmitted {
			checkErased(t, "read", env, "the learner")
		}
	}
}

// TestErasureByAnotherProcessIsSeenAtOnce: two services on one database
// (as two serve processes); the first has the learner's key cached from a
// read; the second erases the learner; the first's next read shows the
// score erased (the erasure epoch moved), and so does an event it appends
// afterwards.
func TestErasureByAnotherProcessIsSeenAtOnce(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.cfg(t)
			cfg.MasterKey, _ = erasure.NewKEKText()
			one, two := open(t, cfg, true), open(t, cfg, true)
			ctx := testenv.Context(t, time.Minute)
			learner := uuid.New()
			env, err := one.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learner, ScoreRaw: 41})
			if err != nil {
				t.Fatal(err)
			}
			testenv.Settle(t, one.Store)
			if got, err := one.Store.Get(ctx, env.ID); err != nil || got.Erased || dataOf(t, got)["score_raw"] != float64(41) {
				t.Fatalf("before the erasure: %s %v", got.Data, err)
			}
			if _, err := two.Erase(ctx, learner.String(), "test"); err != nil {
				t.Fatal(err)
			}
			got, err := one.Store.Get(ctx, env.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkErased(t, "the other process", got, "the learner")
			late, err := one.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learner, ScoreRaw: 42})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*service.Service{one, two} {
				got, err := s.Store.Get(ctx, late.ID)
				if err != nil {
					t.Fatal(err)
				}
				checkErased(t, "appended with a cached key after the erasure", got, "the learner")
			}
		})
	}
}

// TestSubjectKeysOnBothStores: the stores' key table keeps the first key
// of a subject, keeps a tombstone after an erasure (no key is created for
// the subject again), and refuses to rewrap a key that changed.
func TestSubjectKeysOnBothStores(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			svc := open(t, b.cfg(t), true)
			ctx := testenv.Context(t, time.Minute)
			var keys store.SubjectKeys
			if pg, ok := svc.Postgres(); ok {
				keys = pg
			} else {
				keys, _ = svc.SQLite()
			}
			first := store.SubjectKey{Subject: "s1", KEK: "kek-a", Wrapped: []byte("first")}
			got, err := keys.PutSubjectKeys(ctx, []store.SubjectKey{first})
			if err != nil || string(got["s1"].Wrapped) != "first" || got["s1"].Erased() {
				t.Fatalf("put: %+v %v", got, err)
			}
			got, err = keys.PutSubjectKeys(ctx, []store.SubjectKey{{Subject: "s1", KEK: "kek-a", Wrapped: []byte("second")}, {Subject: "s2", KEK: "kek-a", Wrapped: []byte("other")}})
			if err != nil || string(got["s1"].Wrapped) != "first" || string(got["s2"].Wrapped) != "other" {
				t.Fatalf("put again: %+v %v", got, err)
			}
			_, epoch0, err := keys.SubjectKeys(ctx, []string{"s1"})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := erasureDraft("s1")
			if err != nil {
				t.Fatal(err)
			}
			er, err := keys.EraseSubject(ctx, "s1", rec)
			if err != nil || er.ErasedAt.IsZero() || er.Recorded.Envelope.ID != rec.ID {
				t.Fatalf("erase: %+v %v", er, err)
			}
			if err := keys.RewrapSubjectKey(ctx, got["s1"], store.SubjectKey{Subject: "s1", KEK: "kek-b", Wrapped: []byte("x")}); !errors.Is(err, store.ErrKeyChanged) {
				t.Errorf("rewrap an erased key: %v, want ErrKeyChanged", err)
			}
			got, err = keys.PutSubjectKeys(ctx, []store.SubjectKey{{Subject: "s1", KEK: "kek-a", Wrapped: []byte("again")}})
			if err != nil || !got["s1"].Erased() || got["s1"].Wrapped != nil {
				t.Fatalf("a key for an erased subject: %+v %v; want the tombstone", got, err)
			}
			all, epoch1, err := keys.SubjectKeys(ctx, []string{"s1", "s2", "nobody"})
			if err != nil || len(all) != 2 || epoch1 != epoch0+1 {
				t.Fatalf("read: %+v epoch %d→%d %v", all, epoch0, epoch1, err)
			}
			if err := keys.RewrapSubjectKey(ctx, all["s2"], store.SubjectKey{Subject: "s2", KEK: "kek-b", Wrapped: []byte("rewrapped")}); err != nil {
				t.Fatal(err)
			}
			live, err := keys.ListSubjectKeys(ctx, "", 10)
			if err != nil || len(live) != 1 || live[0].Subject != "s2" || live[0].KEK != "kek-b" {
				t.Fatalf("list: %+v %v", live, err)
			}
		})
	}
}

func erasureDraft(subject string) (event.Draft, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return event.Draft{}, err
	}
	return event.Draft{ID: id, Type: event.TypeDataSubjectErased, Source: "test", CorrelationID: id,
		OccurredAt: time.Now().Truncate(event.TimePrecision), Data: json.RawMessage(`{"data_subject":"` + subject + `"}`)}, nil
}

// TestDeclaredTypePersonalFields: a type declared by a schema file with
// x-eventbus-data-subject and x-eventbus-personal (examples/schemas'
// course.completed) keeps those fields out of event_store in plaintext, as
// a Go type does, and erasing the learner nulls them on every read.
func TestDeclaredTypePersonalFields(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.cfg(t)
			cfg.SchemaDir = "../examples/schemas"
			svc := open(t, cfg, false)
			ctx := testenv.Context(t, time.Minute)
			h, err := svc.Handler()
			if err != nil {
				t.Fatal(err)
			}
			learner, other := uuid.New(), uuid.New()
			for _, who := range []uuid.UUID{learner, other} {
				code, body := post(t, h, "/v1/events", fmt.Sprintf(`{"type":"course.completed","data":{"course_id":%q,"learner_id":%q,"grade":87,"feedback":"secret-feedback-%s"}}`,
					uuid.New(), who, who))
				if code != http.StatusCreated {
					t.Fatalf("POST course.completed: %d %s", code, body)
				}
			}
			for _, row := range rawData(t, svc) {
				if strings.Contains(row, "secret-feedback") || strings.Contains(row, `"grade":87`) || !strings.Contains(row, `"`+event.SealedKey+`"`) {
					t.Errorf("event_store row holds personal data in plaintext: %s", row)
				}
			}
			if _, err := svc.Erase(ctx, learner.String(), "test"); err != nil {
				t.Fatal(err)
			}
			testenv.Settle(t, svc.Store)
			seen := 0
			for _, env := range readAll(t, svc.Store) {
				if env.Type != "course.completed" {
					continue
				}
				seen++
				data := dataOf(t, env)
				erased := data["learner_id"] == learner.String()
				grade, hasGrade := data["grade"]
				feedback, hasFeedback := data["feedback"]
				switch {
				case !hasGrade || !hasFeedback:
					t.Errorf("event %s lost a personal field's key: %s", env.ID, env.Data)
				case erased && (grade != nil || feedback != nil || !env.Erased):
					t.Errorf("event of the erased learner reads %s, erased %v; want grade and feedback null, erased", env.Data, env.Erased)
				case !erased && (grade != float64(87) || feedback != "secret-feedback-"+other.String() || env.Erased):
					t.Errorf("event of another learner reads %s, erased %v; want it whole", env.Data, env.Erased)
				}
			}
			if seen != 2 {
				t.Fatalf("read %d course.completed events, want 2", seen)
			}
		})
	}
}
