package storetest

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

func testAppendAndGet[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	d := draft("test.created", "stream-1", `{"a":1}`)
	d.CausationID = uuid.Must(uuid.NewV7())
	d.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	d.TraceState = "vendor=value"
	d.DataSchema = "urn:edupulse:schema:test.created:3"
	got := appendOK(t, s, d)[0]
	if got.Position <= 0 || got.StreamVersion != 1 || got.RecordedAt.IsZero() {
		t.Fatalf("appended envelope lacks store fields: position %d, version %d, recorded %v",
			got.Position, got.StreamVersion, got.RecordedAt)
	}
	want := event.Envelope{
		ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject, StreamVersion: 1,
		OccurredAt: d.OccurredAt, RecordedAt: got.RecordedAt, CorrelationID: d.CorrelationID,
		CausationID: d.CausationID, TraceParent: d.TraceParent, TraceState: d.TraceState,
		Position: got.Position, CommitOrder: got.CommitOrder, Data: d.Data, DataSchema: d.DataSchema,
	}
	sameEvent(t, "appended envelope", got, want)
	stored, err := s.Get(ctxFor(t), d.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	sameEvent(t, "stored envelope", stored, got)
	read := readAll(t, s, store.Filter{})
	if len(read) != 1 {
		t.Fatalf("Read returned %d events, want 1", len(read))
	}
	sameEvent(t, "read envelope", read[0], got)
}

func testAppendBatchOrder[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	var drafts []event.Draft
	for i := 0; i < 10; i++ {
		subject := "even"
		if i%2 == 1 {
			subject = "odd"
		}
		drafts = append(drafts, draft("test.batch", subject, `{"i":`+strconv.Itoa(i)+`}`))
	}
	drafts = append(drafts, draft("test.batch", "", `{"nostream":true}`))
	got := appendOK(t, s, drafts...)
	versions := map[string]int64{}
	for i, e := range got {
		if e.ID != drafts[i].ID {
			t.Fatalf("result %d is event %s, want %s: results must follow the batch", i, e.ID, drafts[i].ID)
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("positions not increasing within a batch: %d then %d", got[i-1].Position, e.Position)
		}
		if e.Subject == "" {
			if e.StreamVersion != 0 {
				t.Fatalf("event without a stream has version %d", e.StreamVersion)
			}
			continue
		}
		versions[e.Subject]++
		if e.StreamVersion != versions[e.Subject] {
			t.Fatalf("%s event %d has version %d, want %d", e.Subject, i, e.StreamVersion, versions[e.Subject])
		}
	}
	read := readAll(t, s, store.Filter{})
	if len(read) != len(got) {
		t.Fatalf("read %d events, want %d", len(read), len(got))
	}
	for i := range read {
		if read[i].ID != got[i].ID {
			t.Fatalf("read order differs from batch order at %d", i)
		}
	}
}

func testIdempotent[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	d := draft("test.once", "s", `{"n":1}`)
	first, err := s.Append(ctxFor(t), []event.Draft{d})
	if err != nil {
		t.Fatal(err)
	}
	// The retry carries other data and an expectation that no longer holds:
	// it is still the same event, and must return the original.
	retry := d
	retry.Data = json.RawMessage(`{"n":2}`)
	retry.ExpectedVersion = event.Expect(0)
	second, err := s.Append(ctxFor(t), []event.Draft{retry})
	if err != nil {
		t.Fatalf("second Append of the same id: %v", err)
	}
	if first[0].Duplicate || !second[0].Duplicate {
		t.Fatalf("Duplicate flags = %v then %v, want false then true", first[0].Duplicate, second[0].Duplicate)
	}
	sameEvent(t, "duplicate's envelope", second[0].Envelope, first[0].Envelope)
	if n := countAll(t, s); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
	// The stream did not advance either.
	next := appendOK(t, s, draft("test.once", "s", `{}`))[0]
	if next.StreamVersion != 2 {
		t.Fatalf("next version = %d, want 2", next.StreamVersion)
	}
}

func testIdempotentWithinBatch[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	old := appendOK(t, s, draft("test.mixed", "m", `{"old":true}`))[0]
	again := draft("test.mixed", "m", `{"old":true}`)
	again.ID = old.ID
	fresh := draft("test.mixed", "m", `{"new":true}`)
	res, err := s.Append(ctxFor(t), []event.Draft{again, fresh})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[1].Duplicate {
		t.Fatalf("Duplicate flags = %v, %v; want true, false", res[0].Duplicate, res[1].Duplicate)
	}
	sameEvent(t, "duplicate in batch", res[0].Envelope, old)
	if res[1].Envelope.StreamVersion != 2 {
		t.Fatalf("fresh event version = %d, want 2", res[1].Envelope.StreamVersion)
	}
	// The same id twice in one batch is a caller error.
	dup := draft("test.mixed", "", `{}`)
	_, err = s.Append(ctxFor(t), []event.Draft{dup, dup})
	wantErr(t, err, event.ErrInvalid)
}

func testExpectedVersion[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	first := draft("test.v", "acct", `{}`)
	first.ExpectedVersion = event.Expect(0)
	appendOK(t, s, first)

	// Expecting 0 on an existing stream conflicts, and the other event of the
	// batch, on another stream, is not stored either.
	other := draft("test.v", "elsewhere", `{}`)
	stale := draft("test.v", "acct", `{}`)
	stale.ExpectedVersion = event.Expect(0)
	_, err := s.Append(ctx, []event.Draft{other, stale})
	wantErr(t, err, store.ErrVersionConflict)
	if n := countAll(t, s); n != 1 {
		t.Fatalf("%d events stored after a conflict, want 1", n)
	}
	if _, err := s.Get(ctx, other.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("event of a failed batch was stored (Get: %v)", err)
	}

	// A batch with expectations on consecutive events of one stream.
	a := draft("test.v", "acct", `{}`)
	a.ExpectedVersion = event.Expect(1)
	b := draft("test.v", "acct", `{}`)
	b.ExpectedVersion = event.Expect(2)
	got := appendOK(t, s, a, b)
	if got[0].StreamVersion != 2 || got[1].StreamVersion != 3 {
		t.Fatalf("versions = %d, %d; want 2, 3", got[0].StreamVersion, got[1].StreamVersion)
	}
	// Expecting a version the stream has not reached conflicts too.
	ahead := draft("test.v", "acct", `{}`)
	ahead.ExpectedVersion = event.Expect(7)
	_, err = s.Append(ctx, []event.Draft{ahead})
	wantErr(t, err, store.ErrVersionConflict)
	// A new stream expected at version 3 conflicts: it is at 0.
	fresh := draft("test.v", "new-stream", `{}`)
	fresh.ExpectedVersion = event.Expect(3)
	_, err = s.Append(ctx, []event.Draft{fresh})
	wantErr(t, err, store.ErrVersionConflict)
	if evs, err := s.ReadStream(ctx, "new-stream", 1, 10); err != nil || len(evs) != 0 {
		t.Fatalf("ReadStream(new-stream) = %d events, %v; want none", len(evs), err)
	}
}

// testConcurrentWritersOneStream runs 16 writers that each append the next
// version of one stream, with that version expected. Exactly one must win
// each version, and the stream must have no gaps.
func testConcurrentWritersOneStream[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	const writers, versions = 16, 40
	var mu sync.Mutex
	winners := map[int64][]int{}
	conflicts := 0
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				evs, err := s.ReadStream(ctx, "contended", 1, store.MaxLimit)
				if err != nil {
					errs <- err
					return
				}
				current := int64(len(evs))
				if current >= versions {
					return
				}
				d := draft("test.contended", "contended", `{"writer":`+strconv.Itoa(w)+`}`)
				d.ExpectedVersion = event.Expect(current)
				res, err := s.Append(ctx, []event.Draft{d})
				mu.Lock()
				switch {
				case errors.Is(err, store.ErrVersionConflict):
					conflicts++
				case err != nil:
					mu.Unlock()
					errs <- err
					return
				default:
					v := res[0].Envelope.StreamVersion
					winners[v] = append(winners[v], w)
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer failed: %v", err)
	}
	evs, err := s.ReadStream(ctx, "contended", 1, store.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != versions {
		t.Fatalf("stream has %d events, want %d", len(evs), versions)
	}
	for i, e := range evs {
		if e.StreamVersion != int64(i+1) {
			t.Fatalf("stream has a gap: event %d has version %d", i, e.StreamVersion)
		}
		if len(winners[e.StreamVersion]) != 1 {
			t.Fatalf("version %d won by %v, want exactly one writer", e.StreamVersion, winners[e.StreamVersion])
		}
	}
	t.Logf("%d writers, %d versions, %d conflicts", writers, versions, conflicts)
}

func testTxRollback[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	tx, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	d := draft("test.tx", "rolled", `{}`)
	if _, err := s.AppendTx(ctx, tx, []event.Draft{d}); err != nil {
		t.Fatalf("AppendTx: %v", err)
	}
	if err := h.Rollback(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if n := countAll(t, s); n != 0 {
		t.Fatalf("%d events after rollback, want 0", n)
	}
	if _, err := s.Get(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after rollback: %v, want ErrNotFound", err)
	}
	// The stream's version was rolled back too.
	if v := appendOK(t, s, draft("test.tx", "rolled", `{}`))[0].StreamVersion; v != 1 {
		t.Fatalf("version after rollback = %d, want 1", v)
	}
}

func testTxCommit[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	tx, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	d1 := draft("test.tx", "committed", `{"n":1}`)
	d2 := draft("test.tx", "committed", `{"n":2}`)
	if _, err := s.AppendTx(ctx, tx, []event.Draft{d1}); err != nil {
		t.Fatalf("AppendTx: %v", err)
	}
	if _, err := s.AppendTx(ctx, tx, []event.Draft{d2}); err != nil {
		t.Fatalf("second AppendTx in the same tx: %v", err)
	}
	// Another reader cannot see the events before commit.
	if n := countAll(t, s); n != 0 {
		t.Fatalf("%d events visible before commit, want 0", n)
	}
	if err := h.Commit(ctx, tx); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, store.Filter{})
	if len(got) != 2 || got[0].ID != d1.ID || got[1].ID != d2.ID {
		t.Fatalf("after commit read %d events, want d1 then d2", len(got))
	}
	if got[0].StreamVersion != 1 || got[1].StreamVersion != 2 {
		t.Fatalf("versions %d, %d; want 1, 2", got[0].StreamVersion, got[1].StreamVersion)
	}
}

func testUnknownTypeBytes[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	// Shapes a normalising store would rewrite: key order, whitespace,
	// escaped keys, escapes, number spellings, big numbers, deep nesting.
	// (Duplicate keys are refused before they reach a store: the input
	// limits, testInvalidDrafts.)
	payloads := []string{
		`{"z":1,"a":2}`,
		"{ \"spaced\" : [ 1 , 2 ,\n 3 ] ,\t\"tab\":true }",
		`{"k":1,"\u006b\u0032":2}`,
		`{"escaped":"\u00e9\u0000\ud83d\ude00","html":"<a>&</a>","slash":"\/"}`,
		`{"num":1.0,"exp":1E+2,"neg":-0,"big":123456789012345678901234567890}`,
		`{"nested":{"b":[{"y":null,"x":{}}],"a":[]}}`,
		`[1,"two",{"three":3}]`,
		`"just a string"`,
	}
	for i, p := range payloads {
		d := draft("future.thing.happened", "", p)
		got := appendOK(t, s, d)[0]
		if string(got.Data) != p {
			t.Errorf("payload %d: append returned %q, want %q", i, got.Data, p)
		}
		stored, err := s.Get(ctxFor(t), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(stored.Data) != p {
			t.Errorf("payload %d: stored %q, want byte-for-byte %q", i, stored.Data, p)
		}
	}
	for i, e := range readAll(t, s, store.Filter{}) {
		if string(e.Data) != payloads[i] {
			t.Errorf("payload %d: read %q, want %q", i, e.Data, payloads[i])
		}
	}
}

func testInvalidDrafts[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	good := draft("test.ok", "", `{}`)
	cases := map[string]func(d *event.Draft){
		"no id":               func(d *event.Draft) { d.ID = uuid.Nil },
		"no type":             func(d *event.Draft) { d.Type = "" },
		"wildcard type":       func(d *event.Draft) { d.Type = "quiz.*" },
		"no source":           func(d *event.Draft) { d.Source = "" },
		"no data":             func(d *event.Draft) { d.Data = nil },
		"null data":           func(d *event.Draft) { d.Data = json.RawMessage("null") },
		"data not json":       func(d *event.Draft) { d.Data = json.RawMessage(`{"a":`) },
		"data bad utf8":       func(d *event.Draft) { d.Data = json.RawMessage("\"\xff\"") },
		"no correlation":      func(d *event.Draft) { d.CorrelationID = uuid.Nil },
		"no time":             func(d *event.Draft) { d.OccurredAt = time.Time{} },
		"expected, no stream": func(d *event.Draft) { d.ExpectedVersion = event.Expect(1) },
		"negative expected":   func(d *event.Draft) { d.Subject = "s"; d.ExpectedVersion = event.Expect(-1) },
		"NUL in subject":      func(d *event.Draft) { d.Subject = "a\x00b" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			d := draft(good.Type, "", `{}`)
			mutate(&d)
			_, err := s.Append(ctxFor(t), []event.Draft{good, d})
			wantErr(t, err, event.ErrInvalid)
		})
	}
	// The input limits (event.CheckDraft): a *event.FieldError that names
	// the field, from every store.
	limits := []struct {
		name, field string
		mutate      func(d *event.Draft)
	}{
		{"source of 256 bytes", "source", func(d *event.Draft) { d.Source = "/" + strings.Repeat("s", 255) }},
		{"source not a URI-reference", "source", func(d *event.Draft) { d.Source = "http://[::1" }},
		{"type of 256 bytes", "type", func(d *event.Draft) { d.Type = strings.Repeat("t", 256) }},
		{"white-space subject", "subject", func(d *event.Draft) { d.Subject = " " }},
		{"duplicate key in data", "data.a", func(d *event.Draft) { d.Data = json.RawMessage(`{"a":1,"a":2}`) }},
		{"lone surrogate in data", "data[0]", func(d *event.Draft) { d.Data = json.RawMessage(`["\ud800"]`) }},
	}
	for _, tc := range limits {
		t.Run(tc.name, func(t *testing.T) {
			d := draft(good.Type, "", `{}`)
			tc.mutate(&d)
			_, err := s.Append(ctxFor(t), []event.Draft{good, d})
			var fe *event.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, event.ErrInvalid) {
				t.Errorf("Append: %v; want a *event.FieldError for %s", err, tc.field)
			}
		})
	}
	if _, err := s.Append(ctxFor(t), nil); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("empty batch: %v, want ErrInvalid", err)
	}
	if n := countAll(t, s); n != 0 {
		t.Fatalf("%d events stored from invalid batches, want 0", n)
	}
}

// testConcurrentAppendsOwnResults starts many appends of one event at the
// same moment, as callers without a transaction of their own do: a store
// may run them in one transaction (group commit), and each must still get
// the result it would have got alone. In each round: new events on streams
// of their own, on one shared stream and without a stream; retries of a
// stored event (each gets the original); appends that expect a stale
// version (each conflicts); and one new ID appended four times at once
// (exactly one stores it, the others get it as the original).
func testConcurrentAppendsOwnResults[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	stored := appendOK(t, s, draft("test.group", "group-dup", `{"n":0}`))[0]
	appendOK(t, s, draft("test.group", "group-ver", `{}`))
	type outcome struct {
		kind string
		d    event.Draft
		res  []store.Appended
		err  error
	}
	const rounds = 5
	for round := 0; round < rounds; round++ {
		var calls []outcome
		add := func(kind string, d event.Draft) { calls = append(calls, outcome{kind: kind, d: d}) }
		for i := 0; i < 6; i++ {
			add("fresh", draft("test.group", "group-"+strconv.Itoa(round)+"-"+strconv.Itoa(i), `{}`))
			add("shared", draft("test.group", "group-shared", `{"i":`+strconv.Itoa(i)+`}`))
			add("nostream", draft("test.group", "", `{}`))
		}
		for i := 0; i < 4; i++ {
			again := draft("test.group", "group-dup", `{"n":0}`)
			again.ID = stored.ID
			add("retry", again)
			stale := draft("test.group", "group-ver", `{}`)
			stale.ExpectedVersion = event.Expect(0)
			add("stale", stale)
		}
		same := draft("test.group", "group-same-"+strconv.Itoa(round), `{}`)
		for i := 0; i < 4; i++ {
			add("same", same)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range calls {
			wg.Add(1)
			go func(o *outcome) {
				defer wg.Done()
				<-start
				o.res, o.err = s.Append(ctx, []event.Draft{o.d})
			}(&calls[i])
		}
		close(start)
		wg.Wait()
		var firstOfSame *event.Envelope
		sameStored := 0
		for _, o := range calls {
			switch o.kind {
			case "stale":
				wantErr(t, o.err, store.ErrVersionConflict)
				continue
			}
			if o.err != nil {
				t.Fatalf("round %d: %s append: %v", round, o.kind, o.err)
			}
			got := o.res[0]
			switch o.kind {
			case "fresh", "shared", "nostream":
				if got.Duplicate || got.Envelope.ID != o.d.ID || got.Envelope.Position <= 0 {
					t.Fatalf("round %d: %s append: duplicate %v, id %s, position %d; want a new event %s",
						round, o.kind, got.Duplicate, got.Envelope.ID, got.Envelope.Position, o.d.ID)
				}
				if o.kind == "fresh" && got.Envelope.StreamVersion != 1 {
					t.Fatalf("round %d: fresh stream at version %d, want 1", round, got.Envelope.StreamVersion)
				}
			case "retry":
				if !got.Duplicate {
					t.Fatalf("round %d: retry of a stored event not reported as a duplicate", round)
				}
				sameEvent(t, "retry", got.Envelope, stored)
			case "same":
				if !got.Duplicate {
					sameStored++
				}
				if firstOfSame == nil {
					firstOfSame = &o.res[0].Envelope
				} else if got.Envelope.Position != firstOfSame.Position || got.Envelope.StreamVersion != firstOfSame.StreamVersion {
					t.Fatalf("round %d: one ID appended at once got positions %d and %d", round, got.Envelope.Position, firstOfSame.Position)
				}
			}
		}
		if sameStored != 1 {
			t.Fatalf("round %d: one ID appended 4 times at once was stored %d times, want 1", round, sameStored)
		}
	}
	// The shared stream has no gaps, and holds each of its events once.
	evs, err := s.ReadStream(ctx, "group-shared", 1, store.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != rounds*6 {
		t.Fatalf("shared stream has %d events, want %d", len(evs), rounds*6)
	}
	for i, e := range evs {
		if e.StreamVersion != int64(i+1) {
			t.Fatalf("shared stream has a gap: event %d has version %d", i, e.StreamVersion)
		}
	}
	if n := countAll(t, s); n != 2+rounds*(3*6+1) {
		t.Fatalf("%d events stored, want %d", n, 2+rounds*(3*6+1))
	}
}

// testDataSchemaKept: the version of an event's data (its dataschema) is
// stored with it, on every append path (one event, a batch, in a
// transaction), returned by every read, and returned with the original
// when a duplicate is appended; an event without one reads back without.
func testDataSchemaKept[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	one := draft("test.versioned", "versioned-1", `{"v":1}`)
	one.DataSchema = "urn:edupulse:schema:test.versioned:1"
	a := draft("test.versioned", "versioned-1", `{"v":2}`)
	a.DataSchema = "urn:edupulse:schema:test.versioned:2"
	b := draft("test.versioned", "", `{"none":true}`)
	got := appendOK(t, s, one)
	got = append(got, appendOK(t, s, a, b)...)
	want := []string{one.DataSchema, a.DataSchema, ""}
	for i, e := range got {
		if e.DataSchema != want[i] {
			t.Fatalf("appended event %d has dataschema %q, want %q", i, e.DataSchema, want[i])
		}
	}
	for i, e := range readAll(t, s, store.Filter{}) {
		sameEvent(t, "read event "+strconv.Itoa(i), e, got[i])
	}
	stream, err := s.ReadStream(ctxFor(t), "versioned-1", 1, 10)
	if err != nil || len(stream) != 2 {
		t.Fatalf("ReadStream: %d events, %v", len(stream), err)
	}
	sameEvent(t, "stream event 1", stream[0], got[0])
	sameEvent(t, "stream event 2", stream[1], got[1])
	// A duplicate with another dataschema returns the original's.
	for i, d := range []event.Draft{one, a} {
		dup := d
		dup.DataSchema = "urn:edupulse:schema:test.versioned:9"
		res, err := s.Append(ctxFor(t), []event.Draft{dup})
		if err != nil || !res[0].Duplicate {
			t.Fatalf("append again: %+v, %v", res, err)
		}
		sameEvent(t, "duplicate "+strconv.Itoa(i), res[0].Envelope, got[i])
	}
	res, err := s.Append(ctxFor(t), []event.Draft{a, b})
	if err != nil || !res[0].Duplicate || !res[1].Duplicate {
		t.Fatalf("append the batch again: %+v, %v", res, err)
	}
	sameEvent(t, "batch duplicate", res[0].Envelope, got[1])
}
