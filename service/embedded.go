package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/store/sqlite"
)

// ErrNoStore reports that the embedded store does not exist where the
// configuration says, for a tool that will not create it.
var ErrNoStore = errors.New("no event store")

// dataDirMode is the mode of the embedded store's directory: events are
// personal data, for the owner's eyes only.
const dataDirMode fs.FileMode = 0o700

// storeFile is the embedded store's file in the data directory.
const storeFile = "eventbus.db"

func (s *Service) openEmbeddedStore(ctx context.Context, opts Config) error {
	dir := s.Config.DataDir
	path := filepath.Join(dir, storeFile)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	absDir := filepath.Dir(abs)
	_, statErr := os.Stat(path)
	isNew := errors.Is(statErr, fs.ErrNotExist)
	if isNew && opts.MustExist {
		return fmt.Errorf("%w at %s; set %s (or --%s) to the directory of an existing store, or %s for PostgreSQL, or run `eventbus serve` or `eventbus migrate` first to create one: %w",
			ErrNoStore, abs, config.EnvDataDir, config.FlagDataDir, config.EnvDatabaseURL, fs.ErrNotExist)
	}
	if err := s.securePrivateDir(dir, absDir); err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		return fmt.Errorf("open the embedded store at %s: %w%s", abs, err, dirHint(err, absDir))
	}
	s.lite, s.Store, s.raw, s.driver = st, st, st, sqliteDriver(st)
	s.closers = append(s.closers, st.Close)
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate the embedded store at %s: %w%s", abs, err, dirHint(err, absDir))
	}
	for _, p := range sqlite.Files(path) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			s.Logger.Warn(fmt.Sprintf("the event store file %s has mode %#o: other users can read its events; this process may not change that (it does not own the file): run chmod 600 on it",
				p, fi.Mode().Perm()), "path", p)
		}
	}
	if isNew {
		// A tool run from another directory creates a store there: say so
		// loudly enough that it is noticed.
		s.Logger.Warn("embedded default: SQLite event store; the data lives in "+abs+" (a new, empty store, created now; set "+
			config.EnvDataDir+" to use another, or "+config.EnvDatabaseURL+" for PostgreSQL)", "path", abs)
		return nil
	}
	s.Logger.Info("embedded default: SQLite event store; the data lives in "+abs+
		" (set "+config.EnvDatabaseURL+" for PostgreSQL)", "path", abs)
	return nil
}

// securePrivateDir creates dir with dataDirMode, or tightens an existing
// one that others can read or enter, when this process owns it; it warns
// when it cannot.
func (s *Service) securePrivateDir(dir, absDir string) error {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("create the data directory %s: %w%s", absDir, err, dirHint(err, absDir))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("the data directory %s: %w%s", absDir, err, dirHint(err, absDir))
	}
	if !fi.IsDir() {
		return fmt.Errorf("the data directory %s is not a directory: set %s (or --%s) to a directory", absDir, config.EnvDataDir, config.FlagDataDir)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if !ownedByProcess(fi) {
		s.Logger.Warn(fmt.Sprintf("the data directory %s has mode %#o and another owner: other users can list it, and read what its files allow; run chmod 700 on it, or set %s to a directory of your own",
			absDir, perm, config.EnvDataDir), "path", absDir)
		return nil
	}
	err = os.Chmod(dir, perm&0o700)
	if err == nil {
		s.Logger.Info(fmt.Sprintf("the data directory %s had mode %#o; made it %#o: its events are personal data", absDir, perm, perm&0o700), "path", absDir)
		return nil
	}
	s.Logger.Warn(fmt.Sprintf("the data directory %s has mode %#o: other users can list it, and read what its files allow; this process could not change that: run chmod 700 on it, or set %s to a directory of your own",
		absDir, perm, config.EnvDataDir), "path", absDir, "err", err)
	return nil
}

// dirHint is the advice for an error about the data directory: that it
// must be a directory this process may write. Other errors get none.
func dirHint(err error, absDir string) string {
	var coded interface{ Code() int }
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ENOSPC):
	case errors.As(err, &coded) && sqliteFileError(coded.Code()):
	default:
		return ""
	}
	return " (check that " + absDir + " is a directory this user may write, on a disk with room, or set " + config.EnvDataDir + ")"
}

// sqliteFileError reports an SQLite result code about the file or its
// directory: SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM, SQLITE_FULL.
func sqliteFileError(code int) bool {
	switch code & 0xff {
	case 14, 8, 3, 13:
		return true
	}
	return false
}

// ownedByProcess reports whether this process's user owns the file: only
// then does it change the file's mode (root could change anyone's).
func ownedByProcess(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
