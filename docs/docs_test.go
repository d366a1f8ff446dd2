package docs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository, seen from this package's directory.
const root = ".."

// pages are the Markdown files whose links and test names are checked.
func pages(t *testing.T) []string {
	t.Helper()
	out := []string{"../README.md", "../CONTRIBUTING.md", "../CHANGELOG.md"}
	docs, err := filepath.Glob("*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no pages in docs/: %v", err)
	}
	return append(out, docs...)
}

var (
	testFunc    = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Z0-9_]\w*)\(`)
	suiteCase   = regexp.MustCompile(`\{"(\w+)", test\w*(?:\[TTx\])?\}`)
	namedTest   = regexp.MustCompile("`((?:Test|Fuzz)[A-Z0-9_]\\w*)(?:/(\\w+))?`")
	mdLink      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading     = regexp.MustCompile(`(?m)^#+ (.+)$`)
	notInAnchor = regexp.MustCompile(`[^a-z0-9 _-]`)
)

// TestNamedTestsExist checks that every test a page names in backquotes
// (TestX, FuzzX, or TestConformance/Case of the conformance suites) is a
// test of this repository.
func TestNamedTestsExist(t *testing.T) {
	funcs, cases := map[string]bool{}, map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFunc.FindAllSubmatch(src, -1) {
			funcs[string(m[1])] = true
		}
		if strings.Contains(path, "storetest") || strings.Contains(path, "brokertest") {
			for _, m := range suiteCase.FindAllSubmatch(src, -1) {
				cases[string(m[1])] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, page := range pages(t) {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range namedTest.FindAllStringSubmatch(string(text), -1) {
			named++
			switch {
			case !funcs[m[1]]:
				t.Errorf("%s names %s, which is no test of this repository", page, m[0])
			case m[2] != "" && (m[1] != "TestConformance" || !cases[m[2]]):
				t.Errorf("%s names %s: %s is no case of the conformance suites", page, m[0], m[2])
			}
		}
	}
	if named < 50 {
		t.Errorf("the pages name %d tests; guarantees.md alone names more: is the pattern broken?", named)
	}
}

// TestLinksStayInsideAndFindTheirTarget checks every relative link: its
// file exists inside the repository, and its #anchor is a heading there.
func TestLinksStayInsideAndFindTheirTarget(t *testing.T) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages(t) {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(link, "#")
			target := page
			if file != "" {
				target = filepath.Join(filepath.Dir(page), file)
			}
			abs, err := filepath.Abs(target)
			if err != nil {
				t.Fatal(err)
			}
			if abs != absRoot && !strings.HasPrefix(abs, absRoot+string(filepath.Separator)) {
				t.Errorf("%s links %s, outside the repository", page, link)
				continue
			}
			body, err := os.ReadFile(target)
			if err != nil {
				if fi, statErr := os.Stat(target); statErr == nil && fi.IsDir() && anchor == "" {
					continue
				}
				t.Errorf("%s links %s: %v", page, link, err)
				continue
			}
			if anchor != "" && !hasAnchor(string(body), anchor) {
				t.Errorf("%s links %s: %s has no heading #%s", page, link, target, anchor)
			}
		}
	}
}

// hasAnchor reports whether markdown has a heading whose GitHub anchor is
// anchor: lower case, punctuation dropped, spaces as hyphens.
func hasAnchor(markdown, anchor string) bool {
	for _, m := range heading.FindAllStringSubmatch(markdown, -1) {
		slug := notInAnchor.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
		if strings.ReplaceAll(slug, " ", "-") == anchor {
			return true
		}
	}
	return false
}
