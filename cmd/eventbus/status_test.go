package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/relay"
)

// TestLagCountsHeldBackEvents: a transaction left open in another database
// of the server holds every commit-order reader back, the relay included.
// The events it holds back are committed and unconfirmed, so the lag in
// /v1/status and in the metrics counts them, and `status --max-lag` and
// ReadStatus call the relay unhealthy; when the transaction ends, the relay
// catches up and the lag is gone.
//
// The open transaction holds back the readers of every test that shares the
// server, so it stays open for a moment only.
func TestLagCountsHeldBackEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := newServers(t, ctx)
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, srv.env, "serve", "--http-addr", "127.0.0.1:0")
	serve.waitLog(func(l map[string]any) bool { return l["msg"] == "relay is the leader" }, "the relay to lead")

	pgURL := strings.TrimPrefix(srv.env[0], "EVENTBUS_DATABASE_URL=")
	other, err := pgx.Connect(ctx, withPath(t, pgURL, "/postgres"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ended := false
	endTx := func() {
		if !ended {
			ended = true
			_ = tx.Rollback(context.Background())
			_ = other.Close(context.Background())
		}
	}
	t.Cleanup(endTx)
	// An xid: from now on every snapshot's xmin is at most this one.
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}

	srv.appendQuizzes(t, ctx, 3)
	const threshold = 300 * time.Millisecond
	st := waitStatus(t, serve, "held-back events older than the threshold", func(st statusBody) bool {
		return st.HeldBack > 0 && st.Lag > threshold.Seconds()
	})
	if st.Backlog < 3 {
		t.Errorf("backlog %d with 3 events held back; want >= 3", st.Backlog)
	}
	if age := backlogAgeMetric(t, serve); age <= threshold.Seconds() {
		t.Errorf("eventbus_relay_backlog_age_seconds = %v with events held back for longer than %v", age, threshold)
	}
	rs, err := relay.ReadStatus(ctx, srv.store, relay.DefaultName, threshold)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Healthy || !strings.Contains(strings.Join(rs.Problems, "; "), "held back") {
		t.Errorf("ReadStatus with max lag %v: healthy %v, problems %q; want unhealthy, naming the held-back events",
			threshold, rs.Healthy, rs.Problems)
	}
	r := runCLI(t, dir, srv.env, "status", "--max-lag", threshold.String())
	if r.code != 1 || !strings.Contains(r.stderr, "lag") {
		t.Errorf("status --max-lag %v with events held back: %v; want exit 1 naming the lag", threshold, r)
	}

	endTx()
	waitStatus(t, serve, "the relay to catch up", func(st statusBody) bool { return st.Backlog == 0 && st.Lag == 0 })
	// Another test's transaction may hold events back for a moment again:
	// a threshold far above that.
	if r := runCLI(t, dir, srv.env, "status", "--max-lag", "30s"); r.code != 0 {
		t.Errorf("status after the transaction ended: %v; want exit 0", r)
	}
}

// statusBody is the part of GET /v1/status that the lag tests read.
type statusBody struct {
	Backlog  int64   `json:"backlog"`
	Lag      float64 `json:"lag"`
	HeldBack int64   `json:"held_back"`
	Healthy  bool    `json:"healthy"`
}

// waitStatus polls GET /v1/status until ok accepts it.
func waitStatus(t *testing.T, p *process, what string, ok func(statusBody) bool) statusBody {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := p.call("GET", "/v1/status", "", "")
		var st statusBody
		if code == 200 {
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatalf("GET /v1/status: %v\n%s", err, body)
			}
			if ok(st) {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: GET /v1/status is %d %s", what, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backlogAgeMetric returns eventbus_relay_backlog_age_seconds from /metrics.
func backlogAgeMetric(t *testing.T, p *process) float64 {
	t.Helper()
	code, body := p.call("GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasPrefix(name, "eventbus_relay_backlog_age_seconds{") {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", sc.Text(), err)
			}
			return v
		}
	}
	t.Fatalf("no eventbus_relay_backlog_age_seconds in /metrics:\n%s", body)
	return 0
}
