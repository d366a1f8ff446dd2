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
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
