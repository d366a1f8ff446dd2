package service

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/store/sqlite"
)

func embeddedConfig(dir string) config.Config {
	return config.Config{DataDir: dir, Exchange: broker.DefaultEventsExchange}
}

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestDataDirIsPrivate: events are personal data. A new data directory is
// 0700 and the store's files 0600 whatever the umask allows; an existing
// directory that others can read is tightened to 0700, and the log says so.
func TestDataDirIsPrivate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := syscall.Umask(0o022) // the usual one: it lets 0755 and 0644 through
	defer syscall.Umask(old)

	fresh := filepath.Join(t.TempDir(), "fresh")
	existing := filepath.Join(t.TempDir(), "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{fresh, existing} {
		var logs bytes.Buffer
		svc, err := Open(ctx, embeddedConfig(dir), Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		appendQuiz(t, ctx, svc)
		if got := modeOf(t, dir); got != 0o700 {
			t.Errorf("%s: the data directory has mode %#o, want 0700", dir, got)
		}
		for _, p := range sqlite.Files(filepath.Join(dir, storeFile)) {
			if got := modeOf(t, p); got != sqlite.FileMode {
				t.Errorf("%s has mode %#o, want %#o", p, got, sqlite.FileMode)
			}
		}
		if dir == existing && !strings.Contains(logs.String(), "had mode 0755; made it 0700") {
			t.Errorf("the log does not say the directory was tightened:\n%s", logs.String())
		}
		if err := svc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadOnlyToolsCreateNoStore: a tool that only reads, run where no store
// is, says where it looked and what to do, and creates nothing; a tool that
// writes creates the store and says where.
func TestReadOnlyToolsCreateNoStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "eventbus-data")
	_, err := Open(ctx, embeddedConfig(dir), Config{StoreOnly: true, MustExist: true, Logger: slog.New(slog.DiscardHandler)})
	abs, _ := filepath.Abs(filepath.Join(dir, storeFile))
	if !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "no event store at "+abs) ||
		!strings.Contains(err.Error(), config.EnvDataDir) || !strings.Contains(err.Error(), config.EnvDatabaseURL) ||
		!strings.Contains(err.Error(), "eventbus migrate") {
		t.Fatalf("Open with MustExist where no store is: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the data directory was created: %v", err)
	}

	var logs bytes.Buffer
	svc, err := Open(ctx, embeddedConfig(dir), Config{StoreOnly: true, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "the data lives in "+abs+" (a new, empty store, created now") {
		t.Errorf("a writing tool created the store without a warning that names it:\n%s", logs.String())
	}
	_ = svc.Close()
	svc, err = Open(ctx, embeddedConfig(dir), Config{StoreOnly: true, MustExist: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("MustExist where the store is: %v", err)
	}
	_ = svc.Close()
}

// TestDirectoryHintOnlyForDirectoryErrors: "check that ... is a directory
// this user may write" comes with errors about the directory, and only
// with them.
func TestDirectoryHintOnlyForDirectoryErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const hint = "is a directory this user may write"
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notAStore := t.TempDir()
	if err := os.WriteFile(filepath.Join(notAStore, storeFile), bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir      string
		wantHint bool
	}{
		{filepath.Join(notADir, "data"), true},
		{notAStore, false},
	} {
		_, err := Open(ctx, embeddedConfig(tc.dir), Config{StoreOnly: true, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Fatalf("%s: opened", tc.dir)
		}
		if strings.Contains(err.Error(), hint) != tc.wantHint || strings.Contains(err.Error(), "writable directory") {
			t.Errorf("%s: %v; want the directory hint: %v", tc.dir, err, tc.wantHint)
		}
	}
}
