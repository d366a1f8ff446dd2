package httpapi

import (
	"net/http"
	"time"
)

// Server timeouts. WriteTimeout leaves room for a page of store.MaxLimit
// events to a slow client (POST /v1/replay lifts it: a replay takes as long
// as it takes); ReadTimeout for a full body at modest speed.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// NewServer returns an http.Server for h on addr with timeouts and a header
// limit set, so that slow or hostile clients cannot hold connections open.
// Set its ErrorLog to route the server's own messages to your logger.
//
// When h is the API's handler (New), the server's Shutdown also ends the
// event streams (GET /v1/events/stream), which would otherwise keep it
// waiting for as long as their clients listen.
func NewServer(addr string, h http.Handler) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
	if a, ok := h.(*api); ok && a.hub != nil { // Probes have no streams
		srv.RegisterOnShutdown(a.hub.stop)
	}
	return srv
}

// StopStreams ends the event streams of h, a handler made by New, each
// with a final comment telling its client to reconnect; new ones are
// refused with 503. NewServer's servers do it on Shutdown; call it before
// the Shutdown of a server of your own (httptest's, say).
func StopStreams(h http.Handler) {
	if a, ok := h.(*api); ok && a.hub != nil {
		a.hub.stop()
	}
}
