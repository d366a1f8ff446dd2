package sqlite_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/sqlite"
)

// withUmask runs f with the process's umask set to mask: the usual 022
// would hide a file created 0644 as much as one created 0600 if the test
// ran under 077.
func withUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %#o, want %#o", path, got, want)
	}
}

// TestFilesArePrivate: events are personal data. A new store's directory
// is 0700 and its files (the database, -wal and -shm) 0600, whatever the
// umask allows; the files of an existing store that others could read are
// tightened when it opens.
func TestFilesArePrivate(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "events.db")
	var s *sqlite.Store
	withUmask(0o022, func() { s = openAt(t, path) })
	if _, err := s.Append(ctx, []event.Draft{testDraft("test.files", "", `{}`)}); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, 0o700)
	for _, p := range sqlite.Files(path) {
		wantMode(t, p, sqlite.FileMode)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A store made by an older build, or copied with cp: readable by all.
	for _, p := range sqlite.Files(path) {
		if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	s = openAt(t, path)
	if _, err := s.Append(ctx, []event.Draft{testDraft("test.files", "", `{}`)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range sqlite.Files(path) {
		if _, err := os.Stat(p); err == nil {
			wantMode(t, p, sqlite.FileMode)
		}
	}
}
