package testenv

import (
	"bytes"
	"database/sql"
	"os"
	"testing"

	_ "modernc.org/sqlite" // the driver the embedded store uses
)

// CorruptSQLitePage damages the SQLite database at path as a failing disk
// would: it overwrites the root page of table (for example "event_store")
// with garbage, past the file's header. Close every connection to the file
// first: the write-ahead log must have been checkpointed into the file.
func CorruptSQLitePage(t testing.TB, path, table string) {
	t.Helper()
	if _, err := os.Stat(path + "-wal"); err == nil {
		if fi, _ := os.Stat(path + "-wal"); fi.Size() > 0 {
			t.Fatalf("testenv: %s still has a write-ahead log: close the store first", path)
		}
	}
	db, err := sql.Open("sqlite", path+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	var pageSize, root int64
	err = db.QueryRow("PRAGMA page_size").Scan(&pageSize)
	if err == nil {
		err = db.QueryRow("SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?", table).Scan(&root)
	}
	_ = db.Close()
	if err != nil {
		t.Fatalf("testenv: find the root page of %s in %s: %v", table, path, err)
	}
	if root < 2 {
		t.Fatalf("testenv: table %s has root page %d: page 1 holds the header", table, root)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// 0xA5 is no b-tree page type: SQLite reports the page as corrupt.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, int(pageSize)), (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
