package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	ceclient "github.com/cloudevents/sdk-go/v2/client"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
)

// sdkTarget is an API server for the SDK test: its address, an HTTP
// client for it, and how to wait until what it stored is readable.
type sdkTarget struct {
	srv    *httptest.Server
	settle func()
}

// embeddedTarget is the API on the embedded store (SQLite), auth on.
func embeddedTarget(t *testing.T) sdkTarget {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "events.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.ParseTokens(tokenList)
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{
		Bus:    eventbus.New(s, eventbus.Config{Registry: edupulse.Registry(), Source: "http-test"}),
		Reader: s,
		Tokens: tokens,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return sdkTarget{srv: srv, settle: func() { testenv.Settle(t, store.Store(s)) }}
}

// TestCloudEventsSDKPublishesInEveryMode publishes with the CloudEvents Go
// SDK in structured, binary and batched mode, on the embedded store and on
// PostgreSQL, then reads each event back (with the SDK too) and checks that
// every attribute survived: id, source, type, subject, time (to the
// microsecond, the store's precision), datacontenttype, data byte for
// byte, correlationid, causationid, traceparent, tracestate, and
// expectedversion as the stream version it made.
func TestCloudEventsSDKPublishesInEveryMode(t *testing.T) {
	targets := map[string]func(t *testing.T) sdkTarget{
		"embedded": embeddedTarget,
		"postgres": func(t *testing.T) sdkTarget {
			h := newHarness(t, harnessOption{})
			return sdkTarget{srv: h.srv, settle: func() { testenv.Settle(t, h.store) }}
		},
	}
	for name, newTarget := range targets {
		t.Run(name, func(t *testing.T) {
			target := newTarget(t)
			ctx := testenv.Context(t, 30*time.Second)
			client, err := ceclient.NewHTTP(cehttp.WithTarget(target.srv.URL+"/v1/events"),
				cehttp.WithClient(*target.srv.Client()), cehttp.WithHeader("Authorization", "Bearer "+publishSecret))
			if err != nil {
				t.Fatal(err)
			}
			stream := testenv.Name("sdk-stream")
			newEvent := func(subject string, version int) ce.Event {
				e := ce.New()
				e.SetID(uuid.NewString())
				e.SetSource("/quiz-service/sdk")
				e.SetType("quiz.submitted")
				e.SetSubject(subject)
				e.SetTime(time.Now()) // nanoseconds; the store keeps microseconds
				if err := e.SetData(ce.ApplicationJSON, []byte(quizData(version))); err != nil {
					t.Fatal(err)
				}
				e.SetExtension("correlationid", uuid.NewString())
				e.SetExtension("causationid", uuid.NewString())
				traceID := uuid.New()
				e.SetExtension("traceparent", fmt.Sprintf("00-%x-%016x-01", traceID[:], version+1))
				e.SetExtension("tracestate", "edupulse=sdk")
				e.SetExtension("expectedversion", version) // a CloudEvents Integer
				return e
			}
			// One stream, each event expecting the version before it. (In
			// binary mode the SDK sends header values without the binding's
			// percent-encoding, which reads the same while they hold no '%'.)
			sent := []ce.Event{newEvent(stream, 0), newEvent(stream, 1), newEvent(stream, 2), newEvent(stream, 3)}

			send := func(ctx context.Context, e ce.Event) {
				t.Helper()
				res := client.Send(ctx, e)
				var httpRes *cehttp.Result
				if !protocol.IsACK(res) || !protocol.ResultAs(res, &httpRes) || httpRes.StatusCode != http.StatusCreated {
					t.Fatalf("send %s: %v", e.ID(), res)
				}
			}
			send(binding.WithForceStructured(ctx), sent[0])
			send(binding.WithForceBinary(ctx), sent[1])
			req, err := cehttp.NewHTTPRequestFromEvents(ctx, target.srv.URL+"/v1/events", sent[2:])
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+publishSecret)
			res, err := target.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusCreated {
				t.Fatalf("batch: %d %s %v", res.StatusCode, body, err)
			}
			target.settle()

			for i, want := range sent {
				got := readEvent(t, target.srv, want.ID())
				ext, wantExt := got.Extensions(), want.Extensions()
				switch {
				case got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() || got.Subject() != want.Subject():
					t.Errorf("event %d: got %v, sent %v", i, got, want)
				case !got.Time().Equal(want.Time().Truncate(time.Microsecond)):
					t.Errorf("event %d: time %v, sent %v", i, got.Time(), want.Time())
				case got.DataContentType() != ce.ApplicationJSON || !bytes.Equal(got.Data(), want.Data()):
					t.Errorf("event %d: %s %s, sent %s", i, got.DataContentType(), got.Data(), want.Data())
				case ext["correlationid"] != wantExt["correlationid"] || ext["causationid"] != wantExt["causationid"] ||
					ext["traceparent"] != wantExt["traceparent"] || ext["tracestate"] != wantExt["tracestate"]:
					t.Errorf("event %d: extensions %v, sent %v", i, ext, wantExt)
				case ext["streamversion"] != fmt.Sprint(i+1):
					t.Errorf("event %d: streamversion %v, want %d (expectedversion %v)", i, ext["streamversion"], i+1, wantExt["expectedversion"])
				}
			}
			// expectedversion is checked: the stream is at 4 now.
			stale := newEvent(stream, 2)
			if res := client.Send(binding.WithForceBinary(ctx), stale); !protocol.IsNACK(res) {
				t.Fatalf("a stale expectedversion: %v, want a refusal", res)
			}
		})
	}
}

// readEvent reads one event by id with the read token, and parses it with
// the SDK.
func readEvent(t *testing.T, srv *httptest.Server, id string) ce.Event {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+"/v1/events/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readSecret)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", id, res.StatusCode, body, err)
	}
	return cloudEvent(t, body)
}
