package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/eventbus/httpapi"
)

// TestProbes: the handler of a relay-only process answers /healthz,
// /readyz (503 problem when a check fails) and /metrics as the API does,
// and nothing else.
func TestProbes(t *testing.T) {
	reg := prometheus.NewRegistry()
	failing := errors.New("broker down")
	brokerErr := error(nil)
	h, err := httpapi.Probes(httpapi.ProbesConfig{Metrics: reg, Ready: []httpapi.Check{
		{Name: "store", Check: func(context.Context) error { return nil }},
		{Name: "broker", Check: func(context.Context) error { return brokerErr }},
	}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, `"ok"`},
		{"/readyz", 200, `"ready"`},
		{"/metrics", 200, "eventbus_http_requests_total"},
		{"/v1/events", 404, ""},
		{"/v1/status", 404, ""},
	} {
		rec := get(tc.path)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("GET %s = %d %s; want %d with %q", tc.path, rec.Code, rec.Body, tc.code, tc.body)
		}
	}
	brokerErr = failing
	if rec := get("/readyz"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "broker") ||
		strings.Contains(rec.Body.String(), "broker down") {
		t.Errorf("GET /readyz with the broker failing = %d %s; want 503 naming the check, not its error", rec.Code, rec.Body)
	}
	// A server of them stops like the API's.
	srv := httpapi.NewServer("127.0.0.1:0", h)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	httpapi.StopStreams(h)
	if _, err := httpapi.Probes(httpapi.ProbesConfig{Ready: []httpapi.Check{{Name: "x"}}}); err == nil {
		t.Error("a readiness check without a func was accepted")
	}
}
