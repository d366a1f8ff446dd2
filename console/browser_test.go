package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/service"
)

const (
	adminSecret = "admin-SECRET-console-5a2f7c9e4d"
	readSecret  = "read-SECRET-console-8d3e6b0c1a"
	// dlqGroup is the consumer group whose handler refuses the first
	// delivery of a "poison" event, so that it lands in the DLQ once.
	dlqGroup = "audit"
)

// chromium finds Debian's chromium (or another Chrome). Without one the
// browser tests skip, loudly; with EVENTBUS_REQUIRE_SERVICES=1 they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "no chromium on PATH: the console's browser tests need it (apt-get install -y chromium)"
	if testenv.RequireServices() {
		t.Fatal(why + "; " + testenv.RequireServicesEnv + "=1 forbids skipping")
	}
	fmt.Fprintln(os.Stderr, "SKIPPING the console's browser tests: "+why)
	t.Skip(why)
	return ""
}

// rig is `eventbus serve` with auth on, on one store and the in-process
// broker (whose message size limit the test sets, to park an event), with
// a consumer group that dead-letters a poison event once.
type rig struct {
	t      *testing.T
	url    string
	broker *memory.Broker
	svc    *service.Service
}

func startService(t *testing.T, storeKind string) *rig {
	t.Helper()
	tokens, err := auth.ParseTokens("ops:" + adminSecret + ":admin,auditor:" + readSecret + ":read")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{Exchange: broker.DefaultEventsExchange, HTTPAddr: "127.0.0.1:0", Tokens: tokens, ShutdownTimeout: 10 * time.Second}
	if storeKind == "postgres" {
		cfg.DatabaseURL = testenv.PostgresSchema(t)
	} else {
		cfg.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.DiscardHandler)
	svc, err := service.Open(ctx, cfg, service.Config{Logger: logger, Migrate: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	mem, ok := svc.Broker.(*memory.Broker)
	if !ok {
		t.Fatalf("broker %T, want the in-process one", svc.Broker)
	}
	var refusedOnce sync.Map
	consumer, err := consume.New(svc.Broker, consume.Config{Group: dlqGroup, Exchange: cfg.Exchange, Patterns: []string{"#"},
		MaxAttempts: 1, Logger: logger},
		consume.OnAny(func(_ context.Context, env event.Envelope) error {
			if _, seen := refusedOnce.LoadOrStore(env.ID, true); !seen && env.Subject == "poison" {
				return consume.Permanent(errors.New("poison pill: the handler refuses its first delivery"))
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = consumer.Run(ctx) }()
	select {
	case <-consumer.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer was not ready within 30s")
	}
	addr := make(chan string, 1)
	go func() {
		defer wg.Done()
		if err := svc.Run(ctx, service.RunOptions{HTTP: true, Relay: true, Ready: func(a string) { addr <- a }}); err != nil {
			t.Errorf("service: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = svc.Close()
	})
	select {
	case a := <-addr:
		return &rig{t: t, url: "http://" + a, broker: mem, svc: svc}
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not listen within 30s")
	}
	return nil
}

// publish posts one event with the admin token and returns its id.
func (r *rig) publish(typ, subject string, corr, cause uuid.UUID, data string) uuid.UUID {
	r.t.Helper()
	id := uuid.New()
	body := fmt.Sprintf(`{"id":%q,"type":%q,"source":"console-test","subject":%q,"correlation_id":%q,"data":%s`, id, typ, subject, corr, data)
	if cause != uuid.Nil {
		body += fmt.Sprintf(`,"causation_id":%q`, cause)
	}
	r.publishBody(body + "}")
	return id
}

// publishBody posts one event's body with the admin token.
func (r *rig) publishBody(body string) {
	r.t.Helper()
	if status, b := r.admin("POST", "/v1/events", body); status != 201 {
		r.t.Fatalf("publish: %d %s", status, b)
	}
	// The console lists events in commit order, which an open transaction
	// of another package's test on the shared PostgreSQL holds back for a
	// while: wait until the event is listed, so that a page the test opens
	// next shows it.
	testenv.Settle(r.t, r.svc.Store)
}

// admin sends a request to the API with the admin token (and body, as
// JSON, when it is not empty) and returns the answer's status and body.
func (r *rig) admin(method, path, body string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminSecret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(b)
}

// erase erases a data subject with the admin token.
func (r *rig) erase(subject string) {
	r.t.Helper()
	if status, b := r.admin("POST", "/v1/data-subjects/"+subject+"/erase", ""); status != 200 || !strings.Contains(b, `"erased_at"`) {
		r.t.Fatalf("erase: %d %s", status, b)
	}
}

// waitDeadLetter waits until the consumer group's DLQ holds a message.
func (r *rig) waitDeadLetter() {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, b := r.admin("GET", "/v1/dead-letters/"+dlqGroup, "")
		if status == 200 && strings.Contains(b, `"poison"`) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no dead letter within 30s: %d %s", status, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quiz(score int) string {
	return fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":%d}`, uuid.New(), uuid.New(), score)
}

// browser starts a headless chromium and returns its first tab; tab opens
// more. Every action gets a bounded context of its own.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab opens a new tab in browser's chromium, closed when the test ends.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// run runs actions within 30s, failing the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
	}
}

// waitText waits until the element sel's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want),
		chromedp.WithPollingInterval(20*time.Millisecond))
}

// screenshot saves the page into EVENTBUS_CONSOLE_SCREENSHOTS (the docs'
// screenshots: `make`-free, see docs/console.md), when it is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("EVENTBUS_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConsoleInTheBrowser(t *testing.T) {
	chromium := browser(t) // one browser, a tab per store: starting it is the slow part
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := tab(t, chromium)
			r := startService(t, kind)
			corr := uuid.New()
			root := r.publish("lesson.published", "lesson-1", corr, uuid.Nil,
				fmt.Sprintf(`{"lesson_id":%q,"teacher_id":%q,"title":"Fractions"}`, uuid.New(), uuid.New()))
			child := r.publish("quiz.submitted", "quiz-7", corr, root, quiz(88))
			r.publish("quiz.submitted", "quiz-8", uuid.New(), uuid.Nil, quiz(51))

			// Nothing without a token: the form, then the events.
			run(t, ctx, "open the console", chromedp.Navigate(r.url+"/"), chromedp.WaitVisible(chromedp.ID("token")))
			run(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("token"), adminSecret), chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)),
				chromedp.WaitVisible(chromedp.ID("events")), waitText("#events", "quiz-8"), waitText("#who", "admin"))
			screenshot(t, ctx, "events")

			// Filter by stream: the URL keeps the filter.
			run(t, ctx, "filter", chromedp.SetValue(chromedp.CSS(`input[name="subject"]`), "quiz-7"),
				chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)), waitText("#events", "quiz-7"),
				chromedp.Poll[chromedp.Void](`!document.querySelector("#events").textContent.includes("quiz-8") && location.hash.includes("subject=quiz-7")`))

			// One event, then its correlation.
			run(t, ctx, "open an event", chromedp.Click(chromedp.CSS(`#events a[href^="#/events/"]`)),
				waitText("#data", `"score_raw": 88`), waitText("main", child.String()))
			screenshot(t, ctx, "event")

			run(t, ctx, "follow its correlation", chromedp.Click(chromedp.ID("follow-correlation")),
				waitText("#causation", "lesson.published"), waitText("#causation ul.tree", "quiz.submitted"))
			screenshot(t, ctx, "correlation")

			// The deep link survives a reload.
			run(t, ctx, "reload the correlation", chromedp.Reload(), waitText("#causation", "lesson.published"))

			// An erased learner's score shows as erased, never as blank.
			learner := uuid.New()
			erasedQuiz := r.publish("quiz.submitted", "quiz-erased", uuid.New(), uuid.Nil,
				fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":64,"max_score":null}`, uuid.New(), learner))
			r.erase(learner.String())
			run(t, ctx, "open the erased event", chromedp.Navigate(r.url+"/#/events/"+erasedQuiz.String()),
				// max_score is null but not personal: it stays null.
				waitText("#data", `"score_raw": ‹erased›`), waitText("#data", `"max_score": null`), chromedp.WaitVisible(chromedp.ID("erased-notice")),
				chromedp.Poll[chromedp.Void](`!document.querySelector("#data").textContent.includes('"score_raw": 6')`))
			run(t, ctx, "see it marked in the list", chromedp.Navigate(r.url+"/#/events?subject=quiz-erased"),
				waitText("#events", "erased"))
			// A version 1 event shows as version 2, and as stored on request.
			v1 := uuid.New()
			r.publishBody(fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","subject":"old-quiz","dataschema":"urn:edupulse:schema:quiz.submitted:1","data":%s}`, v1, quiz(40)))
			run(t, ctx, "open a version 1 event", chromedp.Navigate(r.url+"/#/events/"+v1.String()),
				waitText("#data", `"max_score": null`), waitText("main", "urn:edupulse:schema:quiz.submitted:2"))
			run(t, ctx, "show it as stored", chromedp.Click(chromedp.ID("toggle-stored")), waitText("main", "urn:edupulse:schema:quiz.submitted:1"),
				chromedp.Poll[chromedp.Void](`!document.querySelector("#data").textContent.includes("max_score")`))

			// Live: an event published now appears without a reload.
			run(t, ctx, "go live", chromedp.Navigate(r.url+"/#/events?live=1"), waitText("#live-state", "live"))
			r.publish("quiz.submitted", "live-stream-1", uuid.New(), uuid.Nil, quiz(70))
			run(t, ctx, "see the live event", waitText("#events", "live-stream-1"))

			// A parked event, retried once the broker takes it again.
			r.broker.SetMaxMessageSize(600)
			r.publish("quiz.submitted", "big-one", uuid.New(), uuid.Nil,
				fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":1,"note":%q}`, uuid.New(), uuid.New(), strings.Repeat("x", 800)))
			run(t, ctx, "see it parked", chromedp.Navigate(r.url+"/#/relay"), waitText("#parked", "big-one"))
			if os.Getenv("EVENTBUS_CONSOLE_SCREENSHOTS") != "" {
				run(t, ctx, "wait for the charts", chromedp.WaitVisible(chromedp.CSS("svg.chart")))
			}
			screenshot(t, ctx, "relay")
			r.broker.SetMaxMessageSize(0)
			run(t, ctx, "retry it", chromedp.Click(chromedp.CSS("#parked button.retry")), chromedp.WaitVisible(chromedp.ID("no-parked")))

			// A dead letter, requeued (the handler takes it the second time).
			r.publish("quiz.submitted", "poison", uuid.New(), uuid.Nil, quiz(3))
			r.waitDeadLetter()
			run(t, ctx, "see the dead letter", chromedp.Navigate(r.url+"/#/dlq/"+dlqGroup), chromedp.WaitVisible(chromedp.CSS("button.requeue")))
			screenshot(t, ctx, "dlq")
			run(t, ctx, "requeue it", chromedp.Click(chromedp.CSS("button.requeue")), chromedp.WaitVisible(chromedp.ID("no-dead-letters")))

			// A read token sees no admin views.
			run(t, ctx, "forget the token", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("token")))
			run(t, ctx, "log in to read", chromedp.SendKeys(chromedp.ID("token"), readSecret), chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)),
				chromedp.WaitVisible(chromedp.ID("events")), waitText("#who", "read"),
				chromedp.Poll[chromedp.Void](`document.querySelector('#nav a[data-view="dlq"]').hidden`))
		})
	}
}

func TestConsoleSecurityHeaders(t *testing.T) {
	h := consoleHandler()
	for _, path := range []string{"/", "/console/app.js", "/console/app.css"} {
		res := serve(h, path)
		if res.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, res.StatusCode)
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", path, k, got, want)
			}
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	if res := serve(h, "/console/nothing.js"); res.StatusCode != 404 {
		t.Errorf("a missing file: status %d", res.StatusCode)
	}
}
