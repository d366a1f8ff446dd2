package postgres_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestOperationsIndexesMatchMigrations checks that the indexes
// docs/operations.md tells operators to build by hand, CONCURRENTLY, before
// a migration are the ones the migrations create: with any other
// definition, the migration would find an index of that name (IF NOT
// EXISTS) and keep the wrong one.
func TestOperationsIndexesMatchMigrations(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	var migrations strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		migrations.Write(b)
	}
	space := regexp.MustCompile(`\s+`)
	create := regexp.MustCompile(`(?s)CREATE INDEX (?:CONCURRENTLY )?IF NOT EXISTS (\w+) (.*?);`)
	defined := map[string]string{}
	for _, m := range create.FindAllStringSubmatch(migrations.String(), -1) {
		defined[m[1]] = space.ReplaceAllString(m[2], " ")
	}
	documented := regexp.MustCompile(`(?s)CREATE INDEX CONCURRENTLY IF NOT EXISTS (\w+) (.*?);`).FindAllStringSubmatch(string(doc), -1)
	if len(documented) == 0 {
		t.Fatal("docs/operations.md shows no CREATE INDEX CONCURRENTLY")
	}
	seen := map[string]bool{}
	for _, m := range documented {
		name, def := m[1], space.ReplaceAllString(m[2], " ")
		seen[name] = true
		want, ok := defined[name]
		switch {
		case !ok:
			t.Errorf("docs/operations.md builds %s, which no migration creates with IF NOT EXISTS", name)
		case def != want:
			t.Errorf("docs/operations.md builds %s as\n  %s\nthe migration as\n  %s", name, def, want)
		}
	}
	for name := range defined {
		if !seen[name] {
			t.Errorf("a migration creates %s IF NOT EXISTS, but docs/operations.md does not show how to build it first", name)
		}
	}
}
