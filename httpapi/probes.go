package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ProbesConfig configures Probes.
type ProbesConfig struct {
	// Ready are the checks of GET /readyz, as in Config.
	Ready []Check
	// Metrics is the registry GET /metrics serves.
	Metrics *prometheus.Registry
	// Logger receives the access log of failures; default: discarded.
	Logger *slog.Logger
}

// Probes returns a handler of GET /healthz, /readyz and /metrics alone,
// answered as the full API answers them: what a process that runs only
// the relay (`serve --relay-only`) serves, so that orchestrators can probe
// it and Prometheus scrape it.
func Probes(cfg ProbesConfig) (http.Handler, error) {
	authn, m, reg, err := commonParts(cfg.Ready, nil, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	a := &api{ready: cfg.Ready, readyTimeout: DefaultReadyTimeout, auth: authn, maxBody: DefaultMaxBodyBytes,
		retryAfter: DefaultRetryAfter, log: cfg.Logger, metrics: m, mux: http.NewServeMux(),
		requestTimeout: DefaultRequestTimeout}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.route("GET /healthz", 0, a.healthz)
	a.route("GET /readyz", 0, a.readyz)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelError)})
	a.route("GET /metrics", 0, metricsHandler.ServeHTTP)
	return a, nil
}
