package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/store/postgres"
)

// outcome is what a producer learnt about an event it dispatched.
type outcome uint8

const (
	// acked: HTTP 200 or 201, or the library's commit returned nil. The
	// event must be stored exactly once and delivered (G1, G5).
	acked outcome = iota + 1
	// rejected: HTTP 4xx, or Dispatch failed before the commit. Nothing may
	// be stored or delivered (G2, G7).
	rejected
	// rolledBack: the business transaction rolled back on purpose (G2).
	rolledBack
	// unknown: no answer (the HTTP producer gave up, or the commit failed
	// with the connection). Stored or not, but all of its group or nothing.
	unknown
)

func (o outcome) String() string {
	switch o {
	case acked:
		return "acked"
	case rejected:
		return "rejected"
	case rolledBack:
		return "rolled_back"
	case unknown:
		return "unknown"
	}
	return "?"
}

// How an event was dispatched.
const (
	viaHTTPSingle = "http-single"
	viaHTTPBatch  = "http-batch"
	viaLibTx      = "lib-tx"  // eventbus.Bus in a business transaction
	viaLibNilTx   = "lib-nil" // eventbus.Bus in a transaction of its own
)

// entry is one event in the ledger. group ties together the events of one
// request or transaction: they are stored all or none.
type entry struct {
	outcome outcome
	via     string
	group   uuid.UUID
}

// ledger is what the producers know about every event they dispatched.
type ledger struct {
	mu     sync.Mutex
	events map[uuid.UUID]entry
	acked  atomic.Int64
}

func newLedger() *ledger { return &ledger{events: map[uuid.UUID]entry{}} }

func (l *ledger) record(o outcome, via string, group uuid.UUID, ids ...uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.events[id] = entry{outcome: o, via: via, group: group}
	}
	if o == acked {
		l.acked.Add(int64(len(ids)))
	}
}

// counts returns the number of events by outcome and by way of dispatch.
func (l *ledger) counts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := map[string]int{}
	for _, e := range l.events {
		c[e.outcome.String()]++
		c[e.via+" "+e.outcome.String()]++
	}
	return c
}

func (l *ledger) snapshot() map[uuid.UUID]entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uuid.UUID]entry, len(l.events))
	for k, v := range l.events {
		out[k] = v
	}
	return out
}

// producerStats counts what the producers saw.
type producerStats struct {
	httpRequests  atomic.Int64
	httpRetries   atomic.Int64
	httpNetErrors atomic.Int64
	libBegins     atomic.Int64 // transactions that could not even begin
	resendsOK     atomic.Int64
	mu            sync.Mutex
	statuses      map[int]int
	internal      []string // bodies of 500 answers
	// lies are 503 answers ("nothing was stored") for requests whose
	// events turned out stored by that very request.
	lies     []string
	breaches []string // answers that break a guarantee on the spot
}

func newProducerStats() *producerStats { return &producerStats{statuses: map[int]int{}} }

func (s *producerStats) status(code int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[code]++
	if code >= 500 && code != http.StatusServiceUnavailable && len(s.internal) < 5 {
		s.internal = append(s.internal, fmt.Sprintf("%d %s", code, clipBytes(body)))
	}
}

func (s *producerStats) breach(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.breaches) < 20 {
		s.breaches = append(s.breaches, fmt.Sprintf(format, args...))
	}
}

func (s *producerStats) lie(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lies = append(s.lies, fmt.Sprintf(format, args...))
}

func (s *producerStats) statusLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	codes := make([]int, 0, len(s.statuses))
	for c := range s.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%d×%d", c, s.statuses[c])
	}
	return strings.Join(parts, " ")
}

func clipBytes(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// load is the producers' side of a run: the ledger, the stats, the rate
// limiter and the contexts that end production and retries.
type load struct {
	h       *harness
	led     *ledger
	stats   *producerStats
	limiter *rate.Limiter
	seed    int64
	// streams is how many streams the producers write to: few make long
	// streams and contention, many make throughput.
	streams int
	// produce ends when no new dispatch may start; settle when the
	// retries of those in flight must give up.
	produce, settle context.Context
	wg              sync.WaitGroup

	recentMu sync.Mutex
	recent   []sentEvent // acked single events, for idempotent resends
}

type sentEvent struct {
	id       uuid.UUID
	body     []byte
	position string
}

func newLoad(h *harness, seed int64, eventsPerSecond, streams int, produce, settle context.Context) *load {
	burst := max(20, eventsPerSecond/20)
	return &load{h: h, led: newLedger(), stats: newProducerStats(), seed: seed, streams: streams,
		limiter: rate.NewLimiter(rate.Limit(eventsPerSecond), burst), produce: produce, settle: settle}
}

// start starts httpProducers HTTP producers and libProducers library ones,
// whose transactions go through the store opened at dbURL.
func (l *load) start(httpProducers, libProducers int, dbURL string) error {
	for i := range httpProducers {
		rng := rand.New(rand.NewPCG(uint64(l.seed), uint64(i)))
		l.wg.Go(func() { l.runHTTP(rng) })
	}
	if libProducers == 0 {
		return nil
	}
	st, err := postgres.Open(l.settle, dbURL)
	if err != nil {
		return err
	}
	bus := eventbus.New(st, eventbus.Config{Registry: edupulse.Registry(), Source: "chaos-library"})
	var libs sync.WaitGroup
	for i := range libProducers {
		rng := rand.New(rand.NewPCG(uint64(l.seed), uint64(1000+i)))
		libs.Go(func() { l.runLibrary(rng, st, bus) })
	}
	l.wg.Go(func() {
		libs.Wait()
		_ = st.Close()
	})
	return nil
}

func (l *load) wait() { l.wg.Wait() }

// payload returns a random valid event of one of the EduPulse types.
func payload(rng *rand.Rand) event.Payload {
	switch n := rng.IntN(10); {
	case n == 0:
		return edupulse.LessonPublished{LessonID: uuidFrom(rng), TeacherID: uuidFrom(rng), Title: "Fractions " + strconv.Itoa(rng.IntN(1000))}
	case n == 1:
		return edupulse.BadgeAwarded{BadgeID: uuidFrom(rng), RecipientID: uuidFrom(rng), Reason: "streak"}
	}
	return edupulse.QuizSubmitted{QuizID: uuidFrom(rng), LearnerID: uuidFrom(rng), ScoreRaw: int32(rng.IntN(101))}
}

// uuidFrom draws a random (version 4) UUID from rng, so that a seed replays
// the same ids.
func uuidFrom(rng *rand.Rand) uuid.UUID {
	var id uuid.UUID
	for i := 0; i < 16; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			id[i+j] = byte(v >> (8 * j))
		}
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// subject returns a stream for an event: most have one.
func (l *load) subject(rng *rand.Rand) string {
	if rng.IntN(10) == 0 {
		return ""
	}
	return "learner-" + strconv.Itoa(rng.IntN(l.streams))
}

// wireEvent is one event of a POST /v1/events body.
type wireEvent struct {
	ID              string          `json:"id,omitempty"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	ExpectedVersion *int64          `json:"expected_version,omitempty"`
	Data            json.RawMessage `json:"data"`
}

func (l *load) newWireEvent(rng *rand.Rand) wireEvent {
	p := payload(rng)
	data, _ := json.Marshal(p)
	return wireEvent{ID: uuidFrom(rng).String(), Type: p.EventType(), Subject: l.subject(rng), Data: data}
}

// runHTTP is one HTTP producer.
func (l *load) runHTTP(rng *rand.Rand) {
	for l.produce.Err() == nil {
		switch op := rng.IntN(100); {
		case op < 55:
			l.httpSingle(rng)
		case op < 82:
			l.httpBatch(rng, 2+rng.IntN(19), false)
		case op < 88:
			// A batch with one bad event: all of it is refused.
			l.httpBatch(rng, 2+rng.IntN(5), true)
		case op < 94:
			l.httpConflict(rng)
		default:
			l.httpResend(rng)
		}
	}
}

func (l *load) httpSingle(rng *rand.Rand) {
	if l.limiter.Wait(l.produce) != nil {
		return
	}
	ev := l.newWireEvent(rng)
	body, _ := json.Marshal(ev)
	id := uuid.MustParse(ev.ID)
	status, res := l.post(body, false)
	switch {
	case status == 0:
		l.led.record(unknown, viaHTTPSingle, id, id)
	case status >= 400:
		l.led.record(rejected, viaHTTPSingle, id, id)
		l.stats.breach("a valid event %s was refused: %d %s", id, status, clipBytes(res))
	default:
		l.led.record(acked, viaHTTPSingle, id, id)
		var got struct {
			ID       string `json:"id"`
			Position string `json:"position"`
		}
		if err := json.Unmarshal(res, &got); err != nil || got.ID != ev.ID || got.Position == "" {
			l.stats.breach("POST of %s answered %d with %s", id, status, clipBytes(res))
			return
		}
		l.remember(sentEvent{id: id, body: body, position: got.Position})
	}
}

func (l *load) httpBatch(rng *rand.Rand, n int, withBad bool) {
	if l.limiter.WaitN(l.produce, n) != nil {
		return
	}
	events := make([]wireEvent, n)
	ids := make([]uuid.UUID, n)
	for i := range events {
		events[i] = l.newWireEvent(rng)
		ids[i] = uuid.MustParse(events[i].ID)
	}
	if withBad {
		bad := &events[rng.IntN(n)]
		if rng.IntN(2) == 0 {
			bad.Type = "quiz.exploded" // not registered
		} else {
			bad.Type, bad.Data = edupulse.TypeQuizSubmitted, json.RawMessage(`{"quiz_id":"not-a-uuid","learner_id":"x","score_raw":"high"}`)
		}
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	group := ids[0]
	status, res := l.post(body, false)
	switch {
	case status == 0:
		l.led.record(unknown, viaHTTPBatch, group, ids...)
	case status >= 400:
		l.led.record(rejected, viaHTTPBatch, group, ids...)
		if !withBad {
			l.stats.breach("a valid batch was refused: %d %s", status, clipBytes(res))
		} else if status != http.StatusUnprocessableEntity {
			l.stats.breach("a batch with a bad event was answered %d, want 422: %s", status, clipBytes(res))
		}
	default:
		l.led.record(acked, viaHTTPBatch, group, ids...)
		if withBad {
			l.stats.breach("a batch with a bad event was accepted: %d", status)
		}
		var got struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		if err := json.Unmarshal(res, &got); err != nil || len(got.Events) != n {
			l.stats.breach("a batch of %d answered %d with %s", n, status, clipBytes(res))
			return
		}
		for i, e := range got.Events {
			if e.ID != events[i].ID {
				l.stats.breach("batch answer %d is event %s, sent %s", i, e.ID, events[i].ID)
			}
		}
	}
}

// httpConflict sends an event that expects its stream not to exist yet. It
// usually does exist, and then nothing may be stored.
func (l *load) httpConflict(rng *rand.Rand) {
	if l.limiter.Wait(l.produce) != nil {
		return
	}
	ev := l.newWireEvent(rng)
	ev.Subject = "learner-" + strconv.Itoa(rng.IntN(l.streams))
	zero := int64(0)
	ev.ExpectedVersion = &zero
	body, _ := json.Marshal(ev)
	id := uuid.MustParse(ev.ID)
	status, _ := l.post(body, false)
	switch {
	case status == 0:
		l.led.record(unknown, viaHTTPSingle, id, id)
	case status == http.StatusConflict:
		l.led.record(rejected, viaHTTPSingle, id, id)
	case status >= 400:
		l.led.record(rejected, viaHTTPSingle, id, id)
		l.stats.breach("an expected-version conflict was answered %d, want 409", status)
	default:
		l.led.record(acked, viaHTTPSingle, id, id) // the stream was new after all
	}
}

// httpResend posts an acknowledged event again: the answer must be 200 with
// the original (G5).
func (l *load) httpResend(rng *rand.Rand) {
	l.recentMu.Lock()
	if len(l.recent) == 0 {
		l.recentMu.Unlock()
		l.httpSingle(rng)
		return
	}
	sent := l.recent[0]
	l.recent = l.recent[1:]
	l.recentMu.Unlock()
	status, res := l.post(sent.body, true)
	if status == 0 {
		return
	}
	var got struct {
		ID       string `json:"id"`
		Position string `json:"position"`
	}
	if status != http.StatusOK || json.Unmarshal(res, &got) != nil || got.ID != sent.id.String() || got.Position != sent.position {
		l.stats.breach("resending acknowledged event %s (position %s) was answered %d: %s", sent.id, sent.position, status, clipBytes(res))
		return
	}
	l.stats.resendsOK.Add(1)
}

func (l *load) remember(s sentEvent) {
	l.recentMu.Lock()
	defer l.recentMu.Unlock()
	if len(l.recent) < 256 {
		l.recent = append(l.recent, s)
	}
}

// post sends body to POST /v1/events until it gets an answer that settles
// it: 2xx or a 4xx other than a concurrent append. A connection error, a 5xx
// or a 409 concurrent-append is retried with the same body (the ids make it
// safe). It returns 0 when settle ended first. resend says the events were
// stored before, so that a 200 after a 503 is no surprise.
func (l *load) post(body []byte, resend bool) (status int, res []byte) {
	backoff := 20 * time.Millisecond
	// Every attempt so far was answered 503, which says nothing was stored.
	onlyUnavailable := true
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			l.stats.httpRetries.Add(1)
			select {
			case <-l.settle.Done():
				return 0, nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		}
		req, err := http.NewRequestWithContext(l.settle, http.MethodPost, l.h.serveURL()+"/v1/events", bytes.NewReader(body))
		if err != nil {
			return 0, nil
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiSecret)
		l.stats.httpRequests.Add(1)
		r, err := l.h.http.Do(req)
		if err != nil {
			l.stats.httpNetErrors.Add(1)
			onlyUnavailable = false // the request may have been stored
			if l.settle.Err() != nil {
				return 0, nil
			}
			continue
		}
		res, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			onlyUnavailable = false
			continue
		}
		l.stats.status(r.StatusCode, res)
		switch {
		case r.StatusCode == http.StatusOK && attempt > 1 && onlyUnavailable && !resend:
			// Every earlier attempt was told "nothing was stored", yet the
			// events were stored when this one came.
			l.stats.lie("%d answers of 503 before a 200", attempt-1)
			return r.StatusCode, res
		case r.StatusCode < 300:
			return r.StatusCode, res
		case r.StatusCode == http.StatusServiceUnavailable:
			continue
		case r.StatusCode >= 500:
			onlyUnavailable = false
			continue
		case r.StatusCode == http.StatusConflict && problemType(res) == httpapi.ProblemConcurrentAppend:
			onlyUnavailable = false
			continue
		default:
			return r.StatusCode, res
		}
	}
}

func problemType(body []byte) string {
	var p httpapi.Problem
	_ = json.Unmarshal(body, &p)
	return p.Type
}

// libEvent is one event a library producer dispatches.
type libEvent struct {
	id      uuid.UUID
	p       event.Payload
	subject string
}

func (e libEvent) draft() (event.Draft, error) {
	return eventbus.NewDraft(e.p, eventbus.WithID(e.id), eventbus.Subject(e.subject))
}

// runLibrary is one library producer: business transactions that write a
// row and dispatch events, most committed, some rolled back on purpose; and
// dispatches in transactions of the bus's own.
func (l *load) runLibrary(rng *rand.Rand, st *postgres.Store, bus *eventbus.Bus[pgx.Tx]) {
	for l.produce.Err() == nil {
		n := 1 + rng.IntN(3)
		if l.limiter.WaitN(l.produce, n) != nil {
			return
		}
		events := make([]libEvent, n)
		ids := make([]uuid.UUID, n)
		for i := range events {
			ids[i] = uuidFrom(rng)
			events[i] = libEvent{id: ids[i], p: payload(rng), subject: l.subject(rng)}
		}
		opCtx, cancel := context.WithTimeout(l.settle, 10*time.Second)
		if rng.IntN(8) == 0 {
			l.libOwnTx(opCtx, bus, events[0])
		} else {
			l.libBusinessTx(opCtx, rng, st, bus, events, ids, rng.IntN(7) == 0)
		}
		cancel()
	}
}

// libOwnTx dispatches with Dispatch: the bus commits on its own.
func (l *load) libOwnTx(ctx context.Context, bus *eventbus.Bus[pgx.Tx], e libEvent) {
	_, err := bus.Dispatch(ctx, e.p, eventbus.WithID(e.id), eventbus.Subject(e.subject))
	switch {
	case err == nil:
		l.led.record(acked, viaLibNilTx, e.id, e.id)
	case errors.Is(err, eventbus.ErrInvalid), errors.Is(err, eventbus.ErrUnknownType):
		l.led.record(rejected, viaLibNilTx, e.id, e.id)
		l.stats.breach("a valid event was refused by the library: %v", err)
	default:
		// The bus's commit may have happened before the connection broke.
		l.led.record(unknown, viaLibNilTx, e.id, e.id)
	}
}

// libBusinessTx writes a business row and dispatches the events in one
// transaction (one Dispatch each, or one AppendTx), then commits it
// or, when rollback, rolls it back.
func (l *load) libBusinessTx(ctx context.Context, rng *rand.Rand, st *postgres.Store, bus *eventbus.Bus[pgx.Tx], events []libEvent, ids []uuid.UUID, rollback bool) {
	txID := uuidFrom(rng)
	batch := rng.IntN(2) == 0
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		l.stats.libBegins.Add(1)
		return
	}
	fail := func() {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		l.led.record(rejected, viaLibTx, txID, ids...)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO business (tx_id, events) VALUES ($1, $2)`, txID, len(ids)); err != nil {
		fail()
		return
	}
	if batch {
		drafts := make([]event.Draft, len(events))
		for i, e := range events {
			if drafts[i], err = e.draft(); err != nil {
				l.stats.breach("library draft: %v", err)
				fail()
				return
			}
		}
		if _, err := bus.AppendTx(ctx, tx, drafts); err != nil {
			fail()
			return
		}
	} else {
		for _, e := range events {
			if _, err := bus.DispatchTx(ctx, tx, e.p, eventbus.WithID(e.id), eventbus.Subject(e.subject)); err != nil {
				fail()
				return
			}
		}
	}
	// Hold the transaction open a moment: late commits are what readers
	// must not skip (G4).
	if rng.IntN(4) == 0 {
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
	}
	if rollback {
		_ = tx.Rollback(ctx)
		l.led.record(rolledBack, viaLibTx, txID, ids...)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		l.led.record(unknown, viaLibTx, txID, ids...)
		return
	}
	l.led.record(acked, viaLibTx, txID, ids...)
}
