package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
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
