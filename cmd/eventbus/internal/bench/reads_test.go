package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/cmd/eventbus/internal/bench"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/internal/testenv"
)

// The reads scenario at two tiny sizes, on each store: every read of the
// set is there at both sizes and returns what it should, whatever the time
// it took (the figures mean nothing at this size).
func TestReadsEmbedded(t *testing.T) {
	checkReads(t, config.Config{DataDir: t.TempDir()})
}

func TestReadsPostgres(t *testing.T) {
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	rep := checkReads(t, config.Config{DatabaseURL: testenv.PostgresURL()})
	if len(rep.Partitioned) != len(rep.Reads) {
		t.Errorf("the partitioned copy measured %d reads, want %d", len(rep.Partitioned), len(rep.Reads))
	}
	var names []string
	for _, s := range rep.Space {
		names = append(names, s.Relation)
	}
	for _, want := range []string{"event_store", "event_store_hour_idx", "event_store_day_idx", "event_store_position_block_idx"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("space per event lacks %s: %v", want, names)
		}
	}
}

func checkReads(t *testing.T, cfg config.Config) bench.ReadsReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var plans bytes.Buffer
	rep, err := bench.RunReads(ctx, cfg, bench.ReadsOptions{Sizes: []int64{10_000, 30_000}, Reps: 3, Plans: &plans,
		Partitioned: cfg.DatabaseURL != ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Reads) < 20 {
		t.Fatalf("%d reads measured, want the whole set", len(rep.Reads))
	}
	for _, r := range rep.Reads {
		if len(r.P50) != 2 || len(r.Rows) != 2 || r.P50[0] <= 0 || r.P99[1] < r.P50[1] {
			t.Errorf("read %s: p50 %v, p99 %v", r.Name, r.P50, r.P99)
		}
		want := r.Rows[1] > 0
		switch r.Name {
		case "subject+day":
			want = true // the longest stream has about one event a day at these sizes
		case "replay-end":
			want = r.Rows[0] == 0 && r.Rows[1] == 0 // nothing after the window's last event
		case "correlation":
			want = r.Rows[0] == 3 && r.Rows[1] == 3
		case "page", "day", "since", "type", "2types":
			want = r.Rows[0] == 100 && r.Rows[1] == 100
		}
		if !want {
			t.Errorf("read %s returned %v events", r.Name, r.Rows)
		}
	}
	for _, s := range rep.Scans {
		// One day of 90 at each size, and as many positions.
		if len(s.Events) != 2 || s.Events[0] < 10_000/90 || s.Events[1] < 30_000/90 {
			t.Errorf("%s read %v events", s.Name, s.Events)
		}
	}
	if rep.Scans[0].Events[1] != rep.Scans[1].Events[1] && rep.Scans[0].Events[1]+1 != rep.Scans[1].Events[1] {
		t.Errorf("a day held %d events, its positions %d", rep.Scans[0].Events[1], rep.Scans[1].Events[1])
	}
	if !strings.Contains(plans.String(), "## day") {
		t.Errorf("the plans lack the day window:\n%s", plans.String())
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "growth") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
	return rep
}
