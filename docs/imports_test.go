package docs_test

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is this repository's module path.
const module = "github.com/edupulse/eventbus"

// importRules are the rules of the import graph that architecture.md
// documents, in its block fenced as "import-rules".
type importRules struct {
	layers []layer     // from the bottom up
	forbid []forbidden // edges forbidden whatever the layers
}

type layer struct {
	n        int
	patterns []string
}

type forbidden struct {
	from, to []string
	line     int
}

// TestImportGraphFollowsTheDocumentedRules checks the import graph of the
// module's packages (their non-test files) against the rules of
// architecture.md: every package is in a layer, imports only packages of
// lower layers, and makes none of the forbidden edges.
func TestImportGraphFollowsTheDocumentedRules(t *testing.T) {
	rules := readImportRules(t, "architecture.md")
	graph := importGraph(t)
	if len(graph) < 20 {
		t.Fatalf("found %d packages in the module: is the walk broken?", len(graph))
	}
	for _, e := range checkImports(rules, graph) {
		t.Error(e)
	}
}

// TestImportRulesCatchABackwardEdge checks the checker on edges the rules
// forbid: a leaf importing the root, config importing httpapi, the store
// importing the broker.
func TestImportRulesCatchABackwardEdge(t *testing.T) {
	rules := readImportRules(t, "architecture.md")
	for _, edge := range [][2]string{
		{"event", "eventbus"},
		{"auth", "httpapi"},
		{"config", "httpapi"},
		{"relay", "eventbus"},
		{"store/postgres", "broker"},
		{"broker/memory", "store"},
		{"consume", "store/sqlite"},
	} {
		graph := map[string][]string{edge[0]: {edge[1]}, edge[1]: nil}
		if errs := checkImports(rules, graph); len(errs) == 0 {
			t.Errorf("the rules allow %s → %s", edge[0], edge[1])
		}
	}
}

// checkImports returns an error for every package in no layer and every
// edge the rules forbid.
func checkImports(rules importRules, graph map[string][]string) []error {
	var errs []error
	layerOf := func(pkg string) (int, bool) {
		for _, l := range rules.layers {
			for _, p := range l.patterns {
				if matchPackage(p, pkg) {
					return l.n, true
				}
			}
		}
		return 0, false
	}
	pkgs := make([]string, 0, len(graph))
	for pkg := range graph {
		pkgs = append(pkgs, pkg)
	}
	slices.Sort(pkgs)
	for _, pkg := range pkgs {
		from, ok := layerOf(pkg)
		if !ok {
			errs = append(errs, fmt.Errorf("package %s is in no layer of architecture.md's import rules: add it to the layer it belongs to", pkg))
			continue
		}
		for _, imp := range graph[pkg] {
			if to, ok := layerOf(imp); ok && to >= from {
				errs = append(errs, fmt.Errorf("%s (layer %d) imports %s (layer %d): a package imports only packages of lower layers", pkg, from, imp, to))
			}
			for _, f := range rules.forbid {
				if matchAny(f.from, pkg) && matchAny(f.to, imp) {
					errs = append(errs, fmt.Errorf("%s imports %s, which architecture.md forbids (import rules, line %d)", pkg, imp, f.line))
				}
			}
		}
	}
	return errs
}

// matchPackage reports whether pkg, relative to the module ("eventbus" for
// the root), matches pattern: a path, or a path ending in "/..." for the
// package and every package under it.
func matchPackage(pattern, pkg string) bool {
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == dir || strings.HasPrefix(pkg, dir+"/")
	}
	return pattern == pkg
}

func matchAny(patterns []string, pkg string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matchPackage(p, pkg) })
}

var fence = regexp.MustCompile("^```")

// readImportRules reads the block fenced as "import-rules" of page:
//
//	layer 0: event auth internal/...
//	forbid: store/... -> broker/...
func readImportRules(t *testing.T, page string) importRules {
	t.Helper()
	f, err := os.Open(page)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rules importRules
	in, n := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case line == "```import-rules":
			in = true
			continue
		case in && fence.MatchString(line):
			in = false
		}
		if !in || strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		kind, rest, ok := strings.Cut(line, ":")
		switch fields := strings.Fields(kind); {
		case !ok:
			t.Fatalf("%s:%d: %q is not \"layer N: packages\" nor \"forbid: packages -> packages\"", page, n, line)
		case len(fields) == 2 && fields[0] == "layer":
			num, err := strconv.Atoi(fields[1])
			if err != nil || num != len(rules.layers) {
				t.Fatalf("%s:%d: layers are numbered 0, 1, 2... in order; got %q", page, n, fields[1])
			}
			rules.layers = append(rules.layers, layer{n: num, patterns: strings.Fields(rest)})
		case len(fields) == 1 && fields[0] == "forbid":
			from, to, ok := strings.Cut(rest, "->")
			if !ok || len(strings.Fields(from)) == 0 || len(strings.Fields(to)) == 0 {
				t.Fatalf("%s:%d: a forbid rule is \"forbid: packages -> packages\"", page, n)
			}
			rules.forbid = append(rules.forbid, forbidden{from: strings.Fields(from), to: strings.Fields(to), line: n})
		default:
			t.Fatalf("%s:%d: %q is not \"layer N: packages\" nor \"forbid: packages -> packages\"", page, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rules.layers) < 3 {
		t.Fatalf("%s has %d layers in an import-rules block; is it there?", page, len(rules.layers))
	}
	return rules
}

// importGraph returns the module's packages, relative to the module
// ("eventbus" for the root), with the packages of the module that their
// non-test files import. Directories of other modules (bench/peers),
// testdata and hidden directories are left out.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		name := d.Name()
		if path != root {
			if strings.HasPrefix(name, ".") || name == "testdata" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		pkg, err := build.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		self := relative(filepath.ToSlash(rel))
		var imports []string
		for _, imp := range pkg.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				imports = append(imports, relative(strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")))
			}
		}
		graph[self] = imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// relative names a package by its path in the module, "eventbus" for the
// root.
func relative(dir string) string {
	if dir == "" || dir == "." {
		return "eventbus"
	}
	return dir
}
