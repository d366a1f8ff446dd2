// Package sqlite is the embedded event store: the same contract as
// store/postgres, in one SQLite file, through modernc.org/sqlite (no cgo).
// With no database URL, `eventbus serve` runs on it.
//
// # Commit order
//
// SQLite has one writer at a time, and a writer holds the lock from its
// first write to its commit. Event ids (the global position) are therefore
// assigned in commit order, so the commit-order key is the position itself
// (Envelope.CommitOrder == Position) and a reader that pages by id never
// skips a late commit (G4): nothing ever commits below an id a reader has
// seen. Stats.HeldBack and Stats.OldestTxAge are always 0: an open
// transaction holds back the other writers here, never the readers.
//
// # Connections
//
// The store keeps two pools on the file:
//
//   - the write pool, one connection, returned by DB(). Its transactions
//     begin IMMEDIATE: they take the write lock at BEGIN, so a transaction
//     never fails to upgrade from reading to writing. Writers queue for the
//     connection inside the process, which is cheaper and fairer than
//     SQLite's sleep-and-retry busy handler;
//   - the read pool, several read-only connections. In WAL mode readers
//     never wait for the writer, so Read, Get and the rest run while a
//     transaction is open, and see only what has committed.
//
// Concurrent Append calls share one transaction and so one fsync (group
// commit), each with its own all-or-nothing outcome. A commit group runs
// its prepared statements on the driver's connection directly: inside a
// *sql.Tx, database/sql starts a goroutine for every query.
//
// # Transactions of the caller
//
// AppendTx takes a *sql.Tx (HandleOnce hands its handler one). It must come
// from DB().BeginTx: an IMMEDIATE transaction on the write connection. The
// store's reads do not see its events before it commits: they use the read
// pool. While it is open every
// other writer of the store waits, so keep it short, and never call Append,
// Claim or another writing method of the store from inside it: that waits
// for the connection the transaction holds, until its context ends. A
// transaction from another *sql.DB on the same file works, but it begins
// DEFERRED unless its DSN says _txlock=immediate, and then AppendTx may fail
// with store.ErrUnavailable when another writer committed first: roll back
// and retry. A failed AppendTx undoes only itself (it runs in a savepoint),
// so the caller's transaction stays usable.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL by default: the WAL is
// synced at every commit, so an event is on disk when Append returns (G1),
// even across a power loss. Config{Synchronous: SynchronousNormal} syncs only at
// checkpoints: faster, and still safe if the process crashes, but a power
// loss can take the last commits.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/edupulse/eventbus/store"
)

// Store is the SQLite event store. It is safe for concurrent use.
type Store struct {
	path    string
	write   *sql.DB // one connection; transactions begin IMMEDIATE
	read    *sql.DB // read-only connections
	raw     rawCache
	group   groupCommit
	closed  atomic.Bool
	closeMu sync.Once
	busy    time.Duration
	// damaged holds the first error that found the file corrupt: Ping
	// reports it from then on, as damage does not heal by itself.
	damaged atomic.Pointer[error]
}

var (
	_ store.TxStore[*sql.Tx] = (*Store)(nil)
	_ store.Migrator         = (*Store)(nil)
)

// Synchronous is SQLite's synchronous setting: when commits reach the disk.
type Synchronous string

// Settings for Config.Synchronous.
const (
	// SynchronousFull syncs the WAL at every commit: a returned Append
	// survives a power loss. The default.
	SynchronousFull Synchronous = "FULL"
	// SynchronousNormal syncs only at checkpoints: a returned Append survives
	// a crash of the process, not of the machine.
	SynchronousNormal Synchronous = "NORMAL"
)

// Defaults for Open.
const (
	DefaultBusyTimeout = 15 * time.Second
	DefaultReadConns   = 8
)

// Config configures Open. The zero Config is the default: commits reach
// the disk before they return (SynchronousFull).
type Config struct {
	// Synchronous says when commits reach the disk. "": SynchronousFull.
	Synchronous Synchronous
	// BusyTimeout is how long a statement waits for a lock that another
	// process holds before it fails with store.ErrUnavailable. 0:
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool. 0: DefaultReadConns.
	ReadConns int
}

// Open opens (creating it if needed) the database file at path, and its
// directory. It does not migrate: call Migrate.
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	if cfg.Synchronous == "" {
		cfg.Synchronous = SynchronousFull
	}
	if cfg.BusyTimeout == 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.ReadConns == 0 {
		cfg.ReadConns = DefaultReadConns
	}
	switch {
	case path == "" || path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("sqlite: open %q: give the path of a database file (an in-memory database cannot be shared by the store's connections)", path)
	case strings.ContainsAny(path, "?#"):
		return nil, fmt.Errorf("sqlite: open %q: the path must not contain '?' or '#'", path)
	case cfg.Synchronous != SynchronousFull && cfg.Synchronous != SynchronousNormal:
		return nil, fmt.Errorf("sqlite: open %s: synchronous must be FULL or NORMAL, not %q", path, cfg.Synchronous)
	case cfg.BusyTimeout < time.Millisecond:
		return nil, fmt.Errorf("sqlite: open %s: the busy timeout must be at least 1ms", path)
	case cfg.ReadConns < 1:
		return nil, fmt.Errorf("sqlite: open %s: the read pool needs at least one connection", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create the directory of %s: %w: %w", path, store.ErrUnavailable, err)
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("sqlite: create %s: %w: %w", path, store.ErrUnavailable, err)
	}

	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	common := url.Values{}
	common.Set("_busy_timeout", busy)
	common.Set("_foreign_keys", "on")
	writeDSN := url.Values{}
	for k, v := range common {
		writeDSN[k] = v
	}
	writeDSN.Set("_txlock", "immediate")
	writeDSN.Set("_journal_mode", "WAL")
	writeDSN.Set("_synchronous", string(cfg.Synchronous))
	// Without a limit the WAL keeps the size of its largest burst.
	writeDSN.Add("_pragma", "journal_size_limit(67108864)")
	// Savepoints and statement journals keep their undo pages in a
	// temporary file unless told otherwise; AppendTx runs in a savepoint.
	writeDSN.Add("_pragma", "temp_store(MEMORY)")
	// The writer touches the tail of every index and the leaves of the
	// active streams: 8 MiB of cache (the default is 2) keeps them.
	writeDSN.Add("_pragma", "cache_size(-8192)")
	readDSN := common
	readDSN.Set("_query_only", "1")

	s := &Store{path: path, busy: cfg.BusyTimeout}
	var err error
	// The write pool opens first: its connection turns WAL on, which the
	// database file then remembers, before any reader opens.
	if s.write, err = sql.Open("sqlite", path+"?"+writeDSN.Encode()); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	if err := s.write.PingContext(ctx); err != nil {
		_ = s.write.Close()
		return nil, s.wrap(err, "open "+path)
	}
	if s.read, err = sql.Open("sqlite", path+"?"+readDSN.Encode()); err != nil {
		_ = s.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.read.SetMaxOpenConns(cfg.ReadConns)
	s.read.SetMaxIdleConns(cfg.ReadConns)
	s.read.SetConnMaxLifetime(0)
	s.read.SetConnMaxIdleTime(0)
	if err := s.read.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, s.wrap(err, "open "+path)
	}
	var mode string
	if err := s.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		_ = s.Close()
		return nil, s.wrap(err, "open "+path)
	}
	if !strings.EqualFold(mode, "wal") {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open %s: the database is in journal mode %q and could not switch to WAL (is it on a network file system?)", path, mode)
	}
	return s, nil
}

// FileMode is the mode of the store's files: events are personal data, for
// the owner's eyes only.
const FileMode fs.FileMode = 0o600

// Files returns the paths of the store's files: the database and, when they
// exist, its write-ahead log and shared-memory index.
func Files(path string) []string { return []string{path, path + "-wal", path + "-shm"} }

// createPrivate creates the database file with FileMode unless it exists:
// SQLite would create it 0644, and gives the -wal and -shm files the
// database file's mode. Files of an existing store that are readable by
// others are tightened when this process owns them; the service
// warns about those it could not tighten.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	for _, p := range Files(path) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 && ownedByProcess(fi) {
			_ = os.Chmod(p, fi.Mode().Perm()&0o700) // best effort: see above
		}
	}
	return nil
}

// ownedByProcess reports whether this process's user owns the file: only
// then does it change the file's mode (root could change anyone's).
func ownedByProcess(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// DB returns the write pool: one connection, whose transactions begin
// IMMEDIATE. Open transactions for AppendTx with DB().BeginTx; see the
// package documentation for what else that implies.
func (s *Store) DB() *sql.DB { return s.write }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// closeWait bounds how long Close waits for an open write transaction.
const closeWait = 5 * time.Second

// Close closes the store's connections. Calls that start afterwards fail
// with store.ErrUnavailable. It waits a while for a write transaction in
// progress to end.
func (s *Store) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.closed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		defer cancel()
		// Holding the write connection, nothing uses the statements
		// prepared on it: they can be finalized.
		if conn, cerr := s.write.Conn(ctx); cerr == nil {
			// Keep the planner's statistics fresh; cheap when nothing
			// changed.
			_, _ = conn.ExecContext(ctx, "PRAGMA optimize")
			_ = conn.Raw(func(dc any) error {
				s.raw.release(dc)
				return nil
			})
			_ = conn.Close()
		}
		err = errors.Join(s.read.Close(), s.write.Close())
	})
	return err
}

// Ping checks that the database file can be read: it reads the newest
// event, which walks the event table's tree from its root. Once any call
// found the file damaged, Ping reports that damage (store.ErrCorrupt).
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return s.wrap(errClosed, "ping")
	}
	if err := s.damaged.Load(); err != nil {
		return *err
	}
	var id int64
	err := s.read.QueryRowContext(ctx, "SELECT id FROM event_store ORDER BY id DESC LIMIT 1").Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) && !strings.Contains(err.Error(), "no such table") {
		return s.wrap(err, "ping")
	}
	return nil
}

var errClosed = errors.New("the store is closed")

// wrap adds context to err and maps it to the store's sentinel errors.
func (s *Store) wrap(err error, op string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if s.closed.Load() || errors.Is(err, errClosed) || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("sqlite: %s on %s: %w: %w", op, s.path, store.ErrUnavailable, errClosed)
	}
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("sqlite: %s: %s is locked by another writer (another process, or a transaction not begun by (*Store).DB(); waited up to %v): %w: %w",
			op, s.path, s.busy, store.ErrUnavailable, err)
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("sqlite: %s: the disk holding %s is full: %w: %w", op, s.path, store.ErrUnavailable, err)
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		// Not transient: a retry reads the same damaged page.
		werr := fmt.Errorf("sqlite: %s: %s is damaged (restore it from a backup, or check it with PRAGMA integrity_check): %w: %w",
			op, s.path, store.ErrCorrupt, err)
		s.damaged.CompareAndSwap(nil, &werr)
		return werr
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM,
		sqlite3.SQLITE_PROTOCOL:
		return fmt.Errorf("sqlite: %s on %s: %w: %w", op, s.path, store.ErrUnavailable, err)
	case sqlite3.SQLITE_CONSTRAINT:
		if strings.Contains(err.Error(), "event_store.event_id") {
			return fmt.Errorf("sqlite: %s: %w: %w", op, store.ErrConcurrentAppend, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
