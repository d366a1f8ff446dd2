package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestTailFollowsTheStreamAcrossReconnections: Tail from the beginning
// yields what is stored, then what commits, through the live stream; when
// the server drops the connection it takes the stream up again after the
// last event, so that nothing is missed and nothing comes twice.
func TestTailFollowsTheStreamAcrossReconnections(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			svc, _ := server(t, b.config(t))
			h, err := svc.Handler()
			if err != nil {
				t.Fatal(err)
			}
			// The reader's server drops its connections; the publisher's
			// server, on the same handler, keeps them.
			srv, pubSrv := httptest.NewServer(h), httptest.NewServer(h)
			defer srv.Close()
			defer pubSrv.Close()
			ctx := testenv.Context(t, 60*time.Second)
			pub, reader := newClient(t, pubSrv.URL, publishToken), newClient(t, srv.URL, readToken)
			var want []uuid.UUID
			publish := func(n int) {
				for range n {
					res, err := pub.Publish(ctx, quiz(len(want)))
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, res.Event.ID)
				}
			}
			publish(3)

			tailCtx, stop := context.WithCancel(ctx)
			defer stop()
			got := make(chan event.Envelope)
			tailErr := make(chan error, 1)
			go func() {
				defer close(got)
				for e, err := range reader.Tail(tailCtx, client.Filter{}, 10*time.Millisecond) {
					if err != nil {
						tailErr <- err
						return
					}
					select {
					case got <- e:
					case <-tailCtx.Done():
						return
					}
				}
			}()
			next := func(i int) {
				t.Helper()
				select {
				case e, ok := <-got:
					if !ok {
						t.Fatalf("tail ended before event %d: %v", i, <-tailErr)
					}
					if e.ID != want[i] {
						t.Fatalf("event %d is %s, want %s (none missed, none twice)", i, e.ID, want[i])
					}
				case <-ctx.Done():
					t.Fatalf("event %d did not come", i)
				}
			}
			for i := range 3 { // the backlog
				next(i)
			}
			publish(2) // live
			next(3)
			next(4)
			srv.CloseClientConnections() // the stream ends; Tail reconnects
			publish(2)
			next(5)
			next(6)
			stop()
			for range got { // drains until Tail has returned
			}
			select {
			case err := <-tailErr:
				t.Fatalf("tail ended with %v, want no error after its context ended", err)
			default:
			}
		})
	}
}

// TestTailRefusesWhatIsNotTheStream: an answer that is not an event
// stream, or a stream whose event is not a CloudEvent, is an error that
// wraps ErrBadAnswer and ends Tail, instead of reconnecting for ever.
func TestTailRefusesWhatIsNotTheStream(t *testing.T) {
	for _, tc := range []struct{ name, contentType, body string }{
		{"a page", "text/html", "<html>proxy</html>"},
		{"not a CloudEvent", "text/event-stream", ": stream open\n\nid: AQID\ndata: {not json\n\n"},
		{"no id", "text/event-stream", ": stream open\n\ndata: {\"specversion\":\"1.0\"}\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := fake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = io.WriteString(w, tc.body)
			})
			ctx := testenv.Context(t, 10*time.Second)
			var err error
			for _, err = range newClient(t, url, "").Tail(ctx, client.Filter{After: "AQID"}, time.Millisecond) {
				if err != nil {
					break
				}
			}
			if !errors.Is(err, client.ErrBadAnswer) || !strings.Contains(err.Error(), "/v1/events/stream") {
				t.Fatalf("%s: %v", tc.name, err)
			}
		})
	}
}
