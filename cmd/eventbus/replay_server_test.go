package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestReplayViaServerSendsEveryFilter: replay --server passes each filter
// flag to POST /v1/replay, positions included, so that a bounded replay
// stays bounded; and a replay without a filter sends nothing unless --all
// says so (all=true).
func TestReplayViaServerSendsEveryFilter(t *testing.T) {
	var (
		mu      sync.Mutex
		queries []url.Values
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/replay" {
			http.NotFound(w, r)
			return
		}
		// The client sends the parameters as a JSON body.
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(r.URL.Query()) > 0 {
			http.Error(w, "want the parameters in a JSON body", http.StatusBadRequest)
			return
		}
		q := url.Values{}
		for k, v := range body {
			switch v := v.(type) {
			case []any:
				for _, s := range v {
					q.Add(k, fmt.Sprint(s))
				}
			default:
				q.Set(k, fmt.Sprint(v))
			}
		}
		mu.Lock()
		queries = append(queries, q)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if q.Get("dry_run") == "true" {
			_, _ = w.Write([]byte(`{"events":[],"total":0,"dry_run":true}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"r1","published":0,"total":0,"resume":"","complete":true}`))
	}))
	t.Cleanup(srv.Close)

	for _, dry := range []bool{true, false} {
		args := []string{"replay", "--server", srv.URL, "--from-position", "1000", "--to-position", "2000",
			"--type", "quiz.submitted", "--subject", "quiz-7", "--queue", "badges"}
		if dry {
			args = append(args, "--dry-run")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr bytes.Buffer
		code := run(ctx, args, &stdout, &stderr)
		cancel()
		if code != 0 {
			t.Fatalf("replay (dry run %v): exit %d\nstdout:\n%s\nstderr:\n%s", dry, code, stdout.String(), stderr.String())
		}
	}
	// No filter: refused before anything is sent, unless --all says so,
	// which the server is told.
	for _, all := range []bool{false, true} {
		args := []string{"replay", "--server", srv.URL, "--queue", "badges"}
		if all {
			args = append(args, "--all")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr bytes.Buffer
		code := run(ctx, args, &stdout, &stderr)
		cancel()
		if want := map[bool]int{false: 2, true: 0}[all]; code != want {
			t.Fatalf("replay without a filter (--all %v): exit %d, want %d\nstderr:\n%s", all, code, want, stderr.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 3 {
		t.Fatalf("the server got %d requests, want 3: a replay without a filter or --all must send none", len(queries))
	}
	if q := queries[2]; q.Get("all") != "true" || q.Get("queue") != "badges" || len(q) != 2 {
		t.Errorf("replay --all sent %s, want all=true and the queue only", q.Encode())
	}
	queries = queries[:2]
	if len(queries) != 2 {
		t.Fatalf("the server got %d requests, want 2", len(queries))
	}
	for i, q := range queries {
		for name, want := range map[string]string{
			"from_position": "1000", "to_position": "2000", "type": "quiz.submitted", "subject": "quiz-7", "queue": "badges",
		} {
			if got := q.Get(name); got != want {
				t.Errorf("request %d (%s): %s = %q, want %q", i, q.Encode(), name, got, want)
			}
		}
	}
	if queries[0].Get("dry_run") != "true" || queries[1].Has("dry_run") {
		t.Errorf("dry_run: %q then %q", queries[0].Get("dry_run"), queries[1].Get("dry_run"))
	}
}
