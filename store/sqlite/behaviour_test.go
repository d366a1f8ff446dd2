package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
)

// A failed AppendTx undoes only itself: the caller's transaction keeps its
// earlier writes, accepts more, and commits.
func TestFailedAppendTxLeavesTheTransactionUsable(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	appendOne(t, s, testDraft("test.tx", "acct", `{"n":0}`))

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "CREATE TABLE business (n INTEGER)"); err != nil {
		t.Fatal(err)
	}
	first := testDraft("test.tx", "acct", `{"n":1}`)
	if _, err := s.AppendTx(ctx, tx, []event.Draft{first}); err != nil {
		t.Fatal(err)
	}
	// A batch whose second event conflicts: its first event, on another
	// stream, must not stay in the transaction.
	other := testDraft("test.tx", "other", `{}`)
	stale := testDraft("test.tx", "acct", `{}`)
	stale.ExpectedVersion = event.Expect(0)
	if _, err := s.AppendTx(ctx, tx, []event.Draft{other, stale}); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("AppendTx with a stale expectation = %v, want ErrVersionConflict", err)
	}
	// Invalid drafts are refused before anything runs.
	if _, err := s.AppendTx(ctx, tx, []event.Draft{{Type: "test.tx"}}); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("AppendTx with an invalid draft = %v, want ErrInvalid", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO business VALUES (1)"); err != nil {
		t.Fatalf("the transaction is not usable after a failed AppendTx: %v", err)
	}
	next := testDraft("test.tx", "acct", `{"n":2}`)
	next.ExpectedVersion = event.Expect(2)
	res, err := s.AppendTx(ctx, tx, []event.Draft{next})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Envelope.StreamVersion != 3 {
		t.Fatalf("version after a failed AppendTx = %d, want 3", res[0].Envelope.StreamVersion)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for _, e := range readAllEvents(t, s) {
		ids = append(ids, e.ID)
	}
	if len(ids) != 3 || ids[1] != first.ID || ids[2] != next.ID {
		t.Fatalf("committed %v, want the first event, %s and %s", ids, first.ID, next.ID)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM business").Scan(&n); err != nil || n != 1 {
		t.Fatalf("business rows = %d, %v; want 1", n, err)
	}
}

// Concurrent Append calls that share a commit keep their own outcomes: the
// conflicting ones store nothing, the others everything.
func TestGroupCommitKeepsOutcomesApart(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const callers = 32
	var wg sync.WaitGroup
	results := make([]error, callers)
	drafts := make([][]event.Draft, callers)
	for i := range drafts {
		a := testDraft("test.group", fmt.Sprintf("own-%d", i), `{}`)
		b := testDraft("test.group", "shared", `{}`)
		if i%2 == 1 {
			b.ExpectedVersion = event.Expect(1000) // never true
		}
		drafts[i] = []event.Draft{a, b}
	}
	for i := range drafts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = s.Append(ctx, drafts[i])
		}()
	}
	wg.Wait()
	stored := map[uuid.UUID]bool{}
	for _, e := range readAllEvents(t, s) {
		stored[e.ID] = true
	}
	for i, err := range results {
		conflict := i%2 == 1
		if conflict != errors.Is(err, store.ErrVersionConflict) || (!conflict && err != nil) {
			t.Fatalf("caller %d: %v", i, err)
		}
		for _, d := range drafts[i] {
			if stored[d.ID] == conflict {
				t.Fatalf("caller %d (conflict %v): event %s stored = %v", i, conflict, d.ID, stored[d.ID])
			}
		}
	}
	evs, err := s.ReadStream(ctx, "shared", 1, store.MaxLimit)
	if err != nil || len(evs) != callers/2 || evs[len(evs)-1].StreamVersion != callers/2 {
		t.Fatalf("stream shared has %d events (%v), want %d without gaps", len(evs), err, callers/2)
	}
}

// An Append whose context ends while it waits for the write connection
// stores nothing and says why.
func TestAppendGivesUpWhenItsContextEnds(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil) // holds the write connection
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	d := testDraft("test.cancel", "", `{}`)
	if _, err := s.Append(short, []event.Draft{d}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append while the writer is busy = %v, want DeadlineExceeded", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the abandoned event was stored: %v", err)
	}
	appendOne(t, s, testDraft("test.cancel", "", `{}`)) // the store still works
}

// A handler that calls Append instead of AppendTx would wait forever for the
// connection its own transaction holds; it gets an error instead.
func TestAppendInsideHandleOnceFails(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	handled, err := s.HandleOnce(ctx, "group", uuid.Must(uuid.NewV7()), func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.Append(ctx, []event.Draft{testDraft("test.nested", "", `{}`)})
		return err
	})
	if handled || err == nil || !strings.Contains(err.Error(), "AppendTx") {
		t.Fatalf("HandleOnce with a nested Append = %v, %v; want an error that points to AppendTx", handled, err)
	}
}

// DB() transactions take the write lock at BEGIN, and a writer that cannot
// get the lock within the busy timeout fails with ErrUnavailable.
func TestWriteLockAtBeginAndBusyTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openAtWith(t, path, sqlite.Config{BusyTimeout: 100 * time.Millisecond})
	ctx := context.Background()

	other, err := sql.Open("sqlite", path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The transaction has written nothing, yet holds the lock.
	if _, err := other.ExecContext(ctx, "INSERT INTO eventbus_inbox VALUES ('g', 'x', 0)"); err == nil || !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Fatalf("write by another connection during an empty DB() transaction = %v, want SQLITE_BUSY", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// Another process holds the lock: the store waits its busy timeout, then
	// reports the store unavailable.
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Append(ctx, []event.Draft{testDraft("test.busy", "", `{}`)})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Append while another process writes = %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited < 80*time.Millisecond {
		t.Fatalf("Append gave up after %v, before its busy timeout", waited)
	}
	if _, err := s.Read(ctx, store.Filter{}); err != nil {
		t.Fatalf("Read while another process writes: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, testDraft("test.busy", "", `{}`))
}

func TestOpenRejectsPathsItCannotShare(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "a?b.db"} {
		if s, err := sqlite.Open(context.Background(), path, sqlite.Config{}); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}

// crashEnv makes the test binary, run as a child, append until it is
// killed, printing the ID of every event Append returned.
const crashEnv = "EVENTBUS_SQLITE_CRASH_CHILD"

// TestKilledProcessLosesNoReturnedEvent runs a child process that appends
// events and reports each one Append returned, kills it with SIGKILL in the
// middle of its work, and finds every reported event in the file (G1 for a
// crash of the process).
func TestKilledProcessLosesNoReturnedEvent(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "events.db")
	openAt(t, path).Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcessLosesNoReturnedEvent$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported []uuid.UUID
	lines := bufio.NewScanner(out)
	for lines.Scan() && len(reported) < 300 {
		if id, err := uuid.Parse(strings.TrimSpace(lines.Text())); err == nil {
			reported = append(reported, id)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if len(reported) < 300 {
		t.Fatalf("the child reported %d events before it stopped", len(reported))
	}
	s := openAt(t, path)
	for _, id := range reported {
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatalf("event %s was returned by Append before the crash, then lost: %v", id, err)
		}
	}
}

func crashChild(path string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d := testDraft("test.crash", fmt.Sprintf("stream-%d", w), `{}`)
				if _, err := s.Append(ctx, []event.Draft{d}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Println(d.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func appendOne(t *testing.T, s *sqlite.Store, d event.Draft) event.Envelope {
	t.Helper()
	res, err := s.Append(context.Background(), []event.Draft{d})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Envelope
}

func readAllEvents(t *testing.T, s *sqlite.Store) []event.Envelope {
	t.Helper()
	var out []event.Envelope
	f := store.Filter{Limit: 1000}
	for {
		page, err := s.Read(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			return out
		}
		out = append(out, page.Events...)
		f.After = page.Next
	}
}

// An insert that fails after others of its batch were written leaves
// nothing of the batch, and the appends that shared its commit group are
// stored all the same.
func TestFailedWriteCommitsNothingOfItsBatch(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.DB().ExecContext(ctx, `CREATE TRIGGER explode BEFORE INSERT ON event_store
		WHEN NEW.type = 'test.explode' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTx(ctx, nil) // queue the appends behind it
	if err != nil {
		t.Fatal(err)
	}
	bad := []event.Draft{testDraft("test.fine", "s", `{}`), testDraft("test.explode", "s", `{}`)}
	var good [][]event.Draft
	for i := 0; i < 4; i++ {
		good = append(good, []event.Draft{testDraft("test.fine", "s", `{}`)})
	}
	var wg sync.WaitGroup
	goodErrs := make([]error, len(good))
	var badErr error
	wg.Add(1 + len(good))
	go func() { defer wg.Done(); _, badErr = s.Append(ctx, bad) }()
	for i := range good {
		go func() { defer wg.Done(); _, goodErrs[i] = s.Append(ctx, good[i]) }()
	}
	time.Sleep(50 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if badErr == nil || !strings.Contains(badErr.Error(), "boom") {
		t.Fatalf("Append of the failing batch = %v, want the trigger's error", badErr)
	}
	for _, d := range bad {
		if _, err := s.Get(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("event %s of the failed batch: Get = %v, want ErrNotFound", d.Type, err)
		}
	}
	for i, batch := range good {
		if goodErrs[i] != nil {
			t.Fatalf("append %d in the failing batch's group: %v", i, goodErrs[i])
		}
		if _, err := s.Get(ctx, batch[0].ID); err != nil {
			t.Fatalf("event of append %d: %v", i, err)
		}
	}
	// The store goes on working, with no gap in the stream.
	appendOne(t, s, testDraft("test.fine", "s", `{}`))
	evs, err := s.ReadStream(ctx, "s", 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.StreamVersion != int64(i+1) {
			t.Fatalf("stream s has version %d at %d", e.StreamVersion, i)
		}
	}
}

// Reads of a stream or of several types page in commit order from any
// cursor, including one on an event of another stream.
func TestFilteredPagingFromAnyCursor(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var drafts []event.Draft
	for i := 0; i < 30; i++ {
		typ := []string{"test.a", "test.b", "test.c"}[i%3]
		drafts = append(drafts, testDraft(typ, fmt.Sprintf("stream-%d", i%2), fmt.Sprintf(`{"i":%d}`, i)))
	}
	res, err := s.Append(ctx, drafts)
	if err != nil {
		t.Fatal(err)
	}
	all := make([]event.Envelope, len(res))
	for i, r := range res {
		all[i] = r.Envelope
	}
	cases := []struct {
		name string
		f    store.Filter
		keep func(e event.Envelope) bool
	}{
		{"stream", store.Filter{Subject: "stream-1"}, func(e event.Envelope) bool { return e.Subject == "stream-1" }},
		{"stream and types", store.Filter{Subject: "stream-0", Types: []string{"test.a", "test.c"}},
			func(e event.Envelope) bool { return e.Subject == "stream-0" && e.Type != "test.b" }},
		{"types, repeated", store.Filter{Types: []string{"test.c", "test.a", "test.c"}},
			func(e event.Envelope) bool { return e.Type != "test.b" }},
	}
	for _, c := range cases {
		for start := -1; start < len(all); start += 7 {
			f := c.f
			f.Limit = 3
			var want []uuid.UUID
			for i, e := range all {
				if i > start && c.keep(e) {
					want = append(want, e.ID)
				}
			}
			if start >= 0 {
				f.After = store.CursorOf(all[start])
			}
			var got []uuid.UUID
			for {
				page, err := s.Read(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Events) == 0 {
					break
				}
				for _, e := range page.Events {
					got = append(got, e.ID)
				}
				f.After = page.Next
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s after event %d: got %v\nwant %v", c.name, start, got, want)
			}
			f.After = store.Cursor{}
			if start >= 0 {
				f.After = store.CursorOf(all[start])
			}
			if n, err := s.Count(ctx, f); err != nil || n != int64(len(want)) {
				t.Fatalf("%s after event %d: Count = %d, %v; want %d", c.name, start, n, err, len(want))
			}
		}
	}
	// Cursors compare by (order, position), as everywhere; one whose order
	// no position here can have was not issued by this store.
	if _, err := s.Read(ctx, store.Filter{After: store.Cursor{Order: math.MaxUint64, Position: 3}}); !errors.Is(err, store.ErrBadCursor) {
		t.Fatalf("Read with a cursor of another store = %v, want ErrBadCursor", err)
	}
}

// A damaged file is not a store that is down: the error says so
// (store.ErrCorrupt, not store.ErrUnavailable, which callers retry), and
// Ping, which readiness checks call, reports it.
func TestCorruptPageIsDamageNotUnavailability(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		appendOne(t, s, testDraft("quiz.submitted", "quiz-"+strconv.Itoa(i), `{"n":1}`))
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping before the damage: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.CorruptSQLitePage(t, path, "event_store")

	s, err = sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Ping(ctx)
	if !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping of a damaged file: %v; want store.ErrCorrupt and not store.ErrUnavailable", err)
	}
	_, err = s.Read(ctx, store.Filter{})
	if !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("read of a damaged file: %v; want store.ErrCorrupt and not store.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("error %q should name the file and say what to do", err)
	}
}

// TestWriteConnectionReplacedBehindTheStatementCache: database/sql closes the
// write connection on its own when it turns bad (a query interrupted when its
// context ends, as at shutdown). The append statements prepared on it must
// then be dropped, not finalized on the closed connection: that crashed the
// process with SIGSEGV, in the next commit group or in Close.
func TestWriteConnectionReplacedBehindTheStatementCache(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	discardWriteConnection := func() {
		t.Helper()
		conn, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// ErrBadConn from Raw makes database/sql close the connection, as it
		// does when the driver reports the connection unusable.
		if err := conn.Raw(func(any) error { return driver.ErrBadConn }); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("Raw = %v, want driver.ErrBadConn", err)
		}
		_ = conn.Close()
	}
	appendOne(t, s, testDraft("test.replaced", "", `{}`)) // prepares the statements
	discardWriteConnection()
	appendOne(t, s, testDraft("test.replaced", "", `{}`)) // prepares them on the new connection
	discardWriteConnection()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
