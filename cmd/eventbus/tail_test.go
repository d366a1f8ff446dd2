package main

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

// TestTailFollowsFromAPosition: tail --from N prints the events from
// position N on, in commit order, then the ones that commit while it runs,
// and stops cleanly on SIGTERM.
func TestTailFollowsFromAPosition(t *testing.T) {
	dir := t.TempDir()
	var ids []string
	publish := func(score int) {
		r := mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quizJSON(score))
		ids = append(ids, eventIDs(t, r.stdout)...)
	}
	for i := 0; i < 3; i++ {
		publish(i)
	}
	cmd, lines := startLines(t, dir, nil, "tail", "--from", "2", "--json", "--poll", "20ms")
	next := func() (id string, position string) {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("tail stopped printing")
			}
			var e struct{ ID, Position string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("tail printed %q: %v", line, err)
			}
			return e.ID, e.Position
		case <-time.After(30 * time.Second):
			t.Fatal("tail printed nothing for 30s")
		}
		return "", ""
	}
	for i, want := range ids[1:] {
		if id, pos := next(); id != want {
			t.Fatalf("tail line %d is event %s at position %s, want %s", i, id, pos, want)
		}
	}
	publish(3) // committed while tail follows
	if id, _ := next(); id != ids[3] {
		t.Fatalf("tail printed %s, want the new event %s", id, ids[3])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail after SIGTERM: %v, want exit 0", err)
	}
}

// firstWrite is an io.Writer that closes written on its first write.
type firstWrite struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() == 0 {
		close(w.written)
	}
	return w.buf.Write(p)
}

// TestTailEndsCleanlyWhenStoppedAnywhere: SIGTERM and Ctrl-C are the normal
// end of tail, so it exits 0 wherever the signal finds it: before it has
// opened the store, or in the middle of a read. A read that the signal cut
// used to exit 1 ("interrupted"), and a start-up that it cut exited 1
// ("context canceled").
func TestTailEndsCleanlyWhenStoppedAnywhere(t *testing.T) {
	for _, env := range []string{"EVENTBUS_AMQP_URL", "EVENTBUS_API_TOKENS", "EVENTBUS_EXCHANGE", "EVENTBUS_HTTP_ADDR"} {
		t.Setenv(env, "")
	}
	pg := testenv.PostgresSchema(t)
	t.Setenv("EVENTBUS_DATABASE_URL", pg)
	t.Setenv("EVENTBUS_DATA_DIR", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	d := event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Source: "test", OccurredAt: time.Now(),
		CorrelationID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(quizJSON(1))}
	if _, err := s.Append(ctx, []event.Draft{d}); err != nil {
		t.Fatal(err)
	}
	testenv.Settle(t, s)

	t.Run("before it starts", func(t *testing.T) {
		stopped, stop := context.WithCancel(ctx)
		stop()
		var stdout, stderr bytes.Buffer
		if code := run(stopped, []string{"tail"}, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
			t.Fatalf("tail stopped before it started: exit %d, stderr %q; want exit 0 and nothing", code, stderr.String())
		}
	})

	t.Run("during a read", func(t *testing.T) {
		tailCtx, stop := context.WithCancel(ctx)
		defer stop()
		stdout := &firstWrite{written: make(chan struct{})}
		var stderr bytes.Buffer
		exit := make(chan int, 1)
		go func() {
			exit <- run(tailCtx, []string{"tail", "--from", "1", "--json", "--poll", "1ms"}, stdout, &stderr)
		}()
		select {
		case <-stdout.written: // tail has read the event: it is in its loop
		case code := <-exit:
			t.Fatalf("tail exited %d before printing: %s", code, stderr.String())
		}
		// A lock on event_store makes tail's next read wait, in the
		// database, until its context ends.
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.Background()) }()
		if _, err := tx.Exec(ctx, "LOCK TABLE event_store IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		for waiting := false; !waiting; {
			err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
				WHERE NOT l.granted AND c.oid = 'event_store'::regclass)`).Scan(&waiting)
			if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatal("tail never read again")
			}
			time.Sleep(time.Millisecond)
		}
		stop()
		if code := <-exit; code != 0 || stderr.Len() > 0 {
			t.Fatalf("tail stopped during a read: exit %d, stderr %q; want exit 0 and nothing", code, stderr.String())
		}
	})
}
