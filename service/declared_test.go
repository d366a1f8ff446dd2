package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// exampleSchemas is the example directory of declared types.
const exampleSchemas = "../examples/schemas"

// declaredRig is a service with the example schema directory, on one of
// the stores, with its HTTP API on a test server.
type declaredRig struct {
	t   testing.TB
	svc *Service
	cfg config.Config
	url string
}

func openDeclared(t testing.TB, ctx context.Context, storeName string, allowUnknown bool) *declaredRig {
	t.Helper()
	cfg := config.Config{Exchange: broker.DefaultEventsExchange, DataDir: t.TempDir(), SchemaDir: exampleSchemas,
		AllowUnknownTypes: allowUnknown, RequestTimeout: 10 * time.Second}
	if storeName == "postgres" {
		cfg.DatabaseURL = testenv.PostgresSchema(t)
	}
	svc, err := Open(ctx, cfg, Config{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	h, err := svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &declaredRig{t: t, svc: svc, cfg: cfg, url: srv.URL}
}

func (r *declaredRig) post(contentType, body string) (int, []byte) {
	r.t.Helper()
	res, err := http.Post(r.url+"/v1/events", contentType, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (r *declaredRig) get(path string) []byte {
	r.t.Helper()
	res, err := http.Get(r.url + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		r.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return b
}

func onBothStores(t *testing.T, test func(t *testing.T, storeName string)) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) { test(t, name) })
	}
}

// TestDeclaredTypeVersionsDelivered: a version 1 and a version 2 event of
// a type declared by schema files, in one store, are each delivered by the
// relay with their own dataschema and their data as written (a declared
// type has no upcasters); data that breaks its version's schema is
// refused with the path of each error, through the envelope, CloudEvents
// and Dispatch in Go alike. On both stores.
func TestDeclaredTypeVersionsDelivered(t *testing.T) {
	onBothStores(t, func(t *testing.T, storeName string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rig := openDeclared(t, ctx, storeName, false)
		got := make(chan event.Envelope, 10)
		c, err := consume.New(rig.svc.Broker, consume.Config{Group: "courses", Exchange: rig.cfg.Exchange,
			Logger: slog.New(slog.DiscardHandler)}, consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			got <- env
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		stop := runBoth(t, ctx, rig.svc, c)
		defer stop()

		learner := uuid.NewString()
		v1 := fmt.Sprintf(`{"course_id":"%s","learner_id":"%s","grade":71}`, uuid.NewString(), learner)
		v2 := fmt.Sprintf(`{"course_id":"%s", "learner_id":"%s", "grade":88, "modules":[{"module_id":"m1","score":90}]}`, uuid.NewString(), learner)
		if status, body := rig.post("application/json", `{"type":"course.completed","subject":"learner","dataschema":"urn:edupulse:schema:course.completed:1","data":`+v1+`}`); status != 201 {
			t.Fatalf("publish version 1: %d %s", status, body)
		}
		if status, body := rig.post("application/cloudevents+json", `{"specversion":"1.0","id":"`+uuid.NewString()+`","source":"/grading","type":"course.completed","subject":"learner","data":`+v2+`}`); status != 201 {
			t.Fatalf("publish version 2 (the latest, named by no dataschema): %d %s", status, body)
		}
		for i, want := range []struct{ data, schema string }{{v1, "urn:edupulse:schema:course.completed:1"}, {v2, "urn:edupulse:schema:course.completed:2"}} {
			select {
			case e := <-got:
				if string(e.Data) != want.data || e.DataSchema != want.schema {
					t.Fatalf("delivery %d: %s %s, want %s %s", i, e.DataSchema, e.Data, want.schema, want.data)
				}
			case <-ctx.Done():
				t.Fatalf("delivery %d did not come", i)
			}
		}

		// Refused, naming the event and the paths.
		status, body := rig.post("application/json", `{"events":[{"type":"course.completed","data":`+v2+`},{"type":"course.completed","data":{"course_id":"x","grade":101,"modules":[{"module_id":"m","score":-1}]}}]}`)
		var p struct {
			Field  string            `json:"field"`
			Event  *int              `json:"event"`
			Errors []event.Violation `json:"errors"`
		}
		if status != 422 || json.Unmarshal(body, &p) != nil || p.Event == nil || *p.Event != 1 || len(p.Errors) != 4 {
			t.Fatalf("a bad batch: %d %s", status, body)
		}
		for _, want := range []string{"/course_id: must be a valid uuid", "/learner_id: is required", "/grade: must be <= 100", "/modules/0/score: must be >= 0"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("the answer %s does not say %q", body, want)
			}
		}

		// Dispatch in Go of a value whose type is declared: the schema
		// checks it too.
		_, err = rig.svc.Bus.Dispatch(ctx, courseCompleted{CourseID: uuid.New(), LearnerID: uuid.New(), Grade: 140})
		var verr *event.ValidationError
		if !errors.As(err, &verr) || len(verr.Violations) != 1 || verr.Violations[0].Path != "/grade" || verr.Violations[0].Rule != "maximum" {
			t.Fatalf("Dispatch of a declared type with a bad grade: %v", err)
		}
		if _, err := rig.svc.Bus.Dispatch(ctx, courseCompleted{CourseID: uuid.New(), LearnerID: uuid.New(), Grade: 40}); err != nil {
			t.Fatalf("Dispatch of a declared type: %v", err)
		}
		// Declared types are listed with their origin.
		var schemas struct {
			Types []event.TypeInfo `json:"types"`
		}
		if err := json.Unmarshal(rig.get("/v1/schemas"), &schemas); err != nil {
			t.Fatal(err)
		}
		var origins []string
		for _, ty := range schemas.Types {
			origins = append(origins, fmt.Sprintf("%s:%s:%d", ty.Type, ty.Origin, len(ty.Versions)))
		}
		if want := "badge.awarded:go:1 course.completed:file:2 forum.post.created:file:1 lesson.published:go:1 quiz.submitted:go:2"; strings.Join(origins, " ") != want {
			t.Fatalf("GET /v1/schemas: %s, want %s", strings.Join(origins, " "), want)
		}
	})
}

// courseCompleted is a Go value of a type declared by a schema file.
type courseCompleted struct {
	CourseID  uuid.UUID `json:"course_id"`
	LearnerID uuid.UUID `json:"learner_id"`
	Grade     int       `json:"grade"`
}

func (courseCompleted) EventType() string { return "course.completed" }

// TestUnknownTypes: a type neither registered nor declared is refused
// with a 422 naming it, by default; with EVENTBUS_ALLOW_UNKNOWN_TYPES it is
// stored and read back byte for byte, any JSON, and the metrics count it
// apart. On both stores.
func TestUnknownTypes(t *testing.T) {
	onBothStores(t, func(t *testing.T, storeName string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		strict := openDeclared(t, ctx, storeName, false)
		status, body := strict.post("application/json", `{"type":"survey.answered","data":{"q":1}}`)
		if status != 422 || !strings.Contains(string(body), `survey.answered`) || !strings.Contains(string(body), "course.completed") {
			t.Fatalf("unknown type, by default: %d %s", status, body)
		}
		open := openDeclared(t, ctx, storeName, true)
		for _, data := range []string{`{"q" : 1,  "a":"\u00e9\n" , "n":1.50e2}`, `[1, "two", null]`, `"just text"`, `42`} {
			id := uuid.NewString()
			status, body := open.post("application/json", `{"id":"`+id+`","type":"survey.answered","dataschema":"https://surveys.example/answered/3","data":`+data+`}`)
			if status != 201 {
				t.Fatalf("unknown type, allowed: %d %s", status, body)
			}
			testenv.Settle(t, open.svc.Store)
			read := open.get("/v1/events/" + id)
			if !bytes.HasSuffix(read, []byte(`"data":`+data+`}`)) || !bytes.Contains(read, []byte(`"dataschema":"https://surveys.example/answered/3"`)) {
				t.Fatalf("read back %s; want the data %s byte for byte and the producer's dataschema", read, data)
			}
		}
		if status, body := open.post("application/json", `{"type":"course.completed","data":{"grade":1}}`); status != 422 {
			t.Fatalf("a declared type is still checked with unknown types allowed: %d %s", status, body)
		}
		metrics := string(open.get("/metrics"))
		if !strings.Contains(metrics, `eventbus_http_events_stored_by_origin_total{origin="unknown"} 4`) {
			t.Fatalf("metrics do not count the 4 events of unknown types:\n%s", grepLines(metrics, "by_origin"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeclaredDataRoundTrips: any data that course.completed version 2
// accepts, in any layout, is stored and comes back byte for byte, from
// the API and in the message the relay publishes. On both stores.
func TestDeclaredDataRoundTrips(t *testing.T) {
	onBothStores(t, func(t *testing.T, storeName string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rig := openDeclared(t, ctx, storeName, false)
		reg := rig.svc.Registry()
		rapid.Check(t, func(rt *rapid.T) {
			data := genCourseCompleted(rt)
			if _, err := reg.CheckAs("course.completed", "", []byte(data)); err != nil {
				rt.Fatalf("the generator made invalid data %s: %v", data, err)
			}
			id := uuid.NewString()
			status, body := rig.post("application/json", `{"id":"`+id+`","type":"course.completed","data":`+data+`}`)
			if status != 201 {
				rt.Fatalf("publish %s: %d %s", data, status, body)
			}
			testenv.Settle(t, rig.svc.Store)
			read := rig.get("/v1/events/" + id)
			env, err := event.Decode(read)
			// course.completed has personal fields: stored sealed, they read
			// back as equal JSON, not byte for byte (G6, G10).
			if err != nil || !sameJSON(env.Data, []byte(data)) {
				rt.Fatalf("read back %s (%v); want the data %s", read, err, data)
			}
			msg, err := broker.EnvelopeMessage(env)
			if err != nil {
				rt.Fatal(err)
			}
			if delivered, err := broker.DecodeMessage(msg); err != nil || string(delivered.Data) != string(env.Data) {
				rt.Fatalf("on the wire: %s (%v), want %s as read", delivered.Data, err, env.Data)
			}
		})
	})
}

// genCourseCompleted draws valid course.completed version 2 data: optional
// fields or not, any text, any white space and key order.
func genCourseCompleted(t *rapid.T) string {
	text := rapid.StringOfN(rapid.RuneFrom(nil, unicodeRanges...), 0, 40, -1)
	members := []string{
		`"course_id":"` + uuid.NewString() + `"`,
		`"learner_id":"` + uuid.NewString() + `"`,
		fmt.Sprintf(`"grade":%d`, rapid.IntRange(0, 100).Draw(t, "grade")),
	}
	if rapid.Bool().Draw(t, "completed_at") {
		members = append(members, `"completed_at":"2026-12-06T07:00:00.123Z"`)
	}
	if rapid.Bool().Draw(t, "feedback") {
		b, _ := json.Marshal(text.Draw(t, "feedback"))
		if rapid.Bool().Draw(t, "escape") {
			b = []byte(strings.ReplaceAll(string(b), "a", `\u0061`))
		}
		members = append(members, `"feedback":`+string(b))
	}
	if rapid.Bool().Draw(t, "modules") {
		n := rapid.IntRange(0, 4).Draw(t, "n")
		mods := make([]string, n)
		for i := range mods {
			mods[i] = fmt.Sprintf(`{"module_id":"m%d","score":%d}`, i, rapid.IntRange(0, 100).Draw(t, "score"))
		}
		members = append(members, `"modules":[`+strings.Join(mods, ", ")+`]`)
	}
	ws := rapid.SampledFrom([]string{"", " ", "\n\t", "  "}).Draw(t, "ws")
	return "{" + ws + strings.Join(rapid.Permutation(members).Draw(t, "order"), ","+ws) + ws + "}"
}

var unicodeRanges = []*unicode.RangeTable{unicode.Latin, unicode.Greek, unicode.Han, unicode.Punct}

// sameJSON reports whether a and b are equal JSON values: the same members
// and items, whatever the white space and member order.
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	return da.Decode(&x) == nil && db.Decode(&y) == nil && reflect.DeepEqual(x, y)
}
