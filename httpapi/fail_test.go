package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
)

// TestFailMapsErrorsToProblems: fail answers each error the store, the bus
// and the broker return with its status, problem type and, for transient
// failures, Retry-After.
func TestFailMapsErrorsToProblems(t *testing.T) {
	a := &api{retryAfter: 3 * time.Second}
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		typ        string
		retryAfter string
	}{
		{"transaction conflict", fmt.Errorf("eventbus: dispatch: postgres: append: %w", store.ErrTxConflict), 503, ProblemUnavailable, "3"},
		{"store unavailable", fmt.Errorf("postgres: %w", store.ErrUnavailable), 503, ProblemUnavailable, "3"},
		{"broker unavailable", fmt.Errorf("rabbitmq: %w", broker.ErrUnavailable), 503, ProblemUnavailable, "3"},
		{"version conflict", fmt.Errorf("postgres: %w", store.ErrVersionConflict), 409, ProblemVersionConflict, ""},
		{"concurrent append", fmt.Errorf("postgres: %w", store.ErrConcurrentAppend), 409, ProblemConcurrentAppend, ""},
		{"anything else", errors.New("disk on fire"), 500, ProblemInternal, ""},
		{"store damaged", fmt.Errorf("sqlite: read: %w", store.ErrCorrupt), 500, ProblemStoreDamaged, ""},
		{"request timeout", fmt.Errorf("replay: %w", errRequestTimeout), 503, ProblemUnavailable, "3"},
		{"replay to a retry queue", fmt.Errorf("%w: queue %q is a retry queue", replay.ErrBadTarget, "badges.retry.1"), 400, ProblemInvalidParameter, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &requestInfo{id: "req-1"}
			r := httptest.NewRequestWithContext(context.WithValue(context.Background(), infoKey{}, info), http.MethodPost, "/v1/events", nil)
			w := httptest.NewRecorder()
			a.fail(w, r, tc.err)
			if w.Code != tc.status || info.problem != tc.typ {
				t.Fatalf("answered %d %s, want %d %s: %s", w.Code, info.problem, tc.status, tc.typ, w.Body)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.status >= 500 && !errors.Is(info.err, tc.err) {
				t.Errorf("the error behind the %d is not kept for the log: %v", tc.status, info.err)
			}
		})
	}
}

// TestFailKeepsServerTextsFromClients: the text of a broker's or store's
// error (hosts, virtual hosts, internals) goes to the log with the request
// ID, never to the client, which gets what to do instead; a 503 says what
// fits the request: publishing advice only to a publish.
func TestFailKeepsServerTextsFromClients(t *testing.T) {
	a := &api{retryAfter: 3 * time.Second}
	const internal = "rabbit-7.internal"
	for _, tc := range []struct {
		method, path string
		err          error
		status       int
		want, never  string
	}{
		{"GET", "/v1/dead-letters/badges", fmt.Errorf("rabbitmq: browse: %w: Exception (404) Reason: \"NOT_FOUND - no queue 'badges.dlq' in vhost '%s'\"", broker.ErrNotFound, internal),
			404, "check the name", internal},
		{"POST", "/v1/replay", fmt.Errorf("rabbitmq: publish: %w: dial %s:5672", broker.ErrUnavailable, internal),
			503, "retry after the Retry-After delay", internal},
		{"GET", "/v1/events", fmt.Errorf("postgres: read on %s: %w", internal, store.ErrUnavailable),
			503, "retry after the Retry-After delay", "same ids"},
		{"GET", "/v1/status", fmt.Errorf("postgres: stats on %s: %w", internal, store.ErrUnavailable),
			503, "retry after the Retry-After delay", "publish"},
		{"POST", "/v1/events", fmt.Errorf("postgres: append on %s: %w", internal, store.ErrUnavailable),
			503, "send them again with the same ids", internal},
	} {
		info := &requestInfo{id: "req-1"}
		r := httptest.NewRequestWithContext(context.WithValue(context.Background(), infoKey{}, info), tc.method, tc.path, nil)
		w := httptest.NewRecorder()
		a.fail(w, r, tc.err)
		body := w.Body.String()
		if w.Code != tc.status || !strings.Contains(body, tc.want) || strings.Contains(body, tc.never) || strings.Contains(body, internal) {
			t.Errorf("%s %s, %v: answered %d %s; want %d with %q, without %q", tc.method, tc.path, tc.err, w.Code, body, tc.status, tc.want, tc.never)
		}
		if !errors.Is(info.err, tc.err) {
			t.Errorf("%s %s: the error is not kept for the log: %v", tc.method, tc.path, info.err)
		}
	}
}
