package console_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"testing"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/console"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

func consoleHandler() http.Handler { return console.Handler() }

func serve(h http.Handler, path string) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Result()
}

// TestConsolePageHasNoInlineScriptOrStyle: the CSP forbids inline script
// and style, so the page must not need them (a browser would ignore them
// silently).
func TestConsolePageHasNoInlineScriptOrStyle(t *testing.T) {
	page, err := os.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for what, re := range map[string]*regexp.Regexp{
		"an inline script":           regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`),
		"a script without src":       regexp.MustCompile(`<script(?:(?:\s(?:type|defer|async)(?:="[^"]*")?)*)\s*>`),
		"a style attribute":          regexp.MustCompile(`\sstyle=`),
		"a style element":            regexp.MustCompile(`<style`),
		"an event handler attribute": regexp.MustCompile(`\son[a-z]+=`),
		"an external URL":            regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),
	} {
		if loc := re.FindIndex(page); loc != nil {
			t.Errorf("index.html has %s: %q", what, page[loc[0]:min(loc[1]+40, len(page))])
		}
	}
	js, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if re := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`); re.Match(js) {
		t.Errorf("app.js uses %q: build the DOM with el()", re.Find(js))
	}
	for _, url := range regexp.MustCompile(`https?://[^'"\s]*`).FindAll(js, -1) {
		if string(url) != "http://www.w3.org/2000/svg" { // a namespace name, never fetched
			t.Errorf("app.js names %s: the console reads only the server it came from", url)
		}
	}
}
