package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
)

// upcasting reads through the registry's read transform, as the service
// does.
func upcasting(c *httpapi.Config) {
	c.Reader = store.Transformed(c.Reader.(store.Store), store.Chain(c.Bus.Registry().Upcast))
}

// call sends one request to the rig with token; body and contentType may
// be empty.
func (r *streamRig) call(method, path, token, contentType, body string) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := r.client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return res.StatusCode, b
}

type versionedEvent struct {
	ID         string          `json:"id"`
	DataSchema string          `json:"dataschema"`
	Data       json.RawMessage `json:"data"`
}

func quizV1(quiz uuid.UUID) string {
	return fmt.Sprintf(`{"quiz_id":"%s","learner_id":"0190d1e2-0000-7000-8000-0000000000bb","score_raw":3}`, quiz)
}

// TestVersionsOnEveryRead: events written as version 1 and 2 of
// quiz.submitted, through the envelope and the CloudEvents modes, read as
// version 2 from every route (list, one event, stream, live stream), and
// as written with stored=true; dataschema names the version delivered. On
// both stores.
func TestVersionsOnEveryRead(t *testing.T) {
	onBothStores(t, upcasting, func(t *testing.T, rig *streamRig) {
		const subject = "versions-learner"
		v1 := event.SchemaURN(edupulse.TypeQuizSubmitted, 1)
		v2 := event.SchemaURN(edupulse.TypeQuizSubmitted, 2)
		latest := rig.openStream("subject="+subject, "").opened()
		stored := rig.openStream("subject="+subject+"&stored=true", "").opened()

		ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
		written := []string{quizV1(ids[0]), strings.TrimSuffix(quizV1(ids[1]), "}") + `,"max_score":50}`, quizV1(ids[2])}
		status, body := rig.call("POST", "/v1/events", publishSecret, "application/json",
			fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","subject":%q,"dataschema":%q,"data":%s}`, ids[0], subject, v1, written[0]))
		if status != 201 {
			t.Fatalf("publish version 1: %d %s", status, body)
		}
		status, body = rig.call("POST", "/v1/events", publishSecret, "application/cloudevents+json",
			fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/quiz","type":"quiz.submitted","subject":%q,"dataschema":%q,"data":%s}`, ids[1], subject, v2, written[1]))
		if status != 201 {
			t.Fatalf("publish version 2 as a CloudEvent: %d %s", status, body)
		}
		status, body = rig.call("POST", "/v1/events", publishSecret, "application/cloudevents-batch+json",
			fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"/quiz","type":"quiz.submitted","subject":%q,"dataschema":%q,"data":%s}]`, ids[2], subject, v1, written[2]))
		if status != 201 {
			t.Fatalf("publish version 1 in a CloudEvents batch: %d %s", status, body)
		}
		testenv.Settle(t, rig.store)

		upcast := func(i int) string {
			if i == 1 {
				return written[i]
			}
			return strings.TrimSuffix(written[i], "}") + `,"max_score":null}`
		}
		check := func(what string, got []versionedEvent, storedView bool) {
			t.Helper()
			if len(got) != len(ids) {
				t.Fatalf("%s: %d events, want %d", what, len(got), len(ids))
			}
			for i, e := range got {
				wantSchema, wantData := v2, upcast(i)
				if storedView {
					wantData = written[i]
					if i != 1 {
						wantSchema = v1
					}
				}
				if e.ID != ids[i].String() || e.DataSchema != wantSchema || string(e.Data) != wantData {
					t.Fatalf("%s: event %d is %s %s %s, want %s %s %s", what, i, e.ID, e.DataSchema, e.Data, ids[i], wantSchema, wantData)
				}
			}
		}
		for _, storedView := range []bool{false, true} {
			q := ""
			if storedView {
				q = "stored=true"
			}
			var page struct{ Events []versionedEvent }
			status, body := rig.call("GET", "/v1/events?subject="+subject+"&"+q, readSecret, "", "")
			if status != 200 || json.Unmarshal(body, &page) != nil {
				t.Fatalf("GET /v1/events: %d %s", status, body)
			}
			check("GET /v1/events?"+q, page.Events, storedView)
			page.Events = nil
			status, body = rig.call("GET", "/v1/streams/"+subject+"?"+q, readSecret, "", "")
			if status != 200 || json.Unmarshal(body, &page) != nil {
				t.Fatalf("GET /v1/streams: %d %s", status, body)
			}
			check("GET /v1/streams?"+q, page.Events, storedView)
			var one []versionedEvent
			for _, id := range ids {
				var e versionedEvent
				status, body := rig.call("GET", "/v1/events/"+id.String()+"?"+q, readSecret, "", "")
				if status != 200 || json.Unmarshal(body, &e) != nil {
					t.Fatalf("GET /v1/events/%s: %d %s", id, status, body)
				}
				one = append(one, e)
			}
			check("GET /v1/events/{id}?"+q, one, storedView)
		}
		for _, view := range []struct {
			stream *sseStream
			stored bool
		}{{latest, false}, {stored, true}} {
			var got []versionedEvent
			for range ids {
				var e versionedEvent
				if m := view.stream.next(); json.Unmarshal([]byte(m.data), &e) != nil {
					t.Fatalf("stream data %q", m.data)
				}
				got = append(got, e)
			}
			check(fmt.Sprintf("the live stream (stored=%v)", view.stored), got, view.stored)
		}
		if status, body := rig.call("GET", "/v1/events?stored=maybe", readSecret, "", ""); status != 400 || !strings.Contains(string(body), `"field":"stored"`) {
			t.Fatalf("stored=maybe: %d %s", status, body)
		}
	})
}

// TestVersionErrorsAnswer422: data that breaks the schema of the version
// its dataschema names, or a dataschema that names no version, is a 422
// naming the event, the field, and each path and rule; nothing is stored.
func TestVersionErrorsAnswer422(t *testing.T) {
	h := newHarness(t, harnessOption{})
	v1 := event.SchemaURN(edupulse.TypeQuizSubmitted, 1)
	good := quizV1(uuid.New())
	for _, tc := range []struct {
		name, contentType, body string
		field                   string
		event                   int
		errors                  []string
	}{
		{"unknown version", "application/json",
			`{"type":"quiz.submitted","dataschema":"urn:edupulse:schema:quiz.submitted:9","data":` + good + `}`, "dataschema", -1, nil},
		{"another type's version", "application/json",
			`{"type":"quiz.submitted","dataschema":"urn:edupulse:schema:badge.awarded:1","data":` + good + `}`, "dataschema", -1, nil},
		{"version 1 data breaks its schema", "application/json",
			`{"type":"quiz.submitted","dataschema":"` + v1 + `","data":{"quiz_id":"x","score_raw":1.5}}`, "data.learner_id", -1,
			[]string{"/learner_id required is required", "/quiz_id format must be a valid uuid", "/score_raw type must be integer, not number"}},
		{"in a batch", "application/json",
			`{"events":[{"type":"quiz.submitted","data":` + good + `},{"type":"quiz.submitted","dataschema":"` + v1 + `","data":{"quiz_id":"` + uuid.NewString() + `","learner_id":"` + uuid.NewString() + `","score_raw":"7"}}]}`,
			"data.score_raw", 1, []string{"/score_raw type must be integer, not string"}},
		{"CloudEvent", "application/cloudevents+json",
			`{"specversion":"1.0","id":"` + uuid.NewString() + `","source":"/q","type":"quiz.submitted","dataschema":"urn:edupulse:schema:quiz.submitted:0","data":` + good + `}`, "dataschema", -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.do(request{method: "POST", path: "/v1/events", token: publishSecret, contentType: tc.contentType, body: tc.body}).
				problem(t, 422, httpapi.ProblemInvalidData)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
			if (tc.event < 0) != (p.Event == nil) || p.Event != nil && *p.Event != tc.event {
				t.Errorf("event %v, want %d", p.Event, tc.event)
			}
			var got []string
			for _, e := range p.Errors {
				got = append(got, e.Path+" "+e.Rule+" "+e.Message)
			}
			if strings.Join(got, "; ") != strings.Join(tc.errors, "; ") {
				t.Errorf("errors %q, want %q (detail %q)", got, tc.errors, p.Detail)
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

// TestSchemasListsEveryTypeWithItsVersions: GET /v1/schemas (read scope)
// names every type, its origin, and each version with its schema.
func TestSchemasListsEveryTypeWithItsVersions(t *testing.T) {
	h := newHarness(t, harnessOption{})
	res := h.get("/v1/schemas")
	if res.status != 200 {
		t.Fatalf("GET /v1/schemas: %d %s", res.status, res.body)
	}
	var got struct {
		Types []struct {
			Type     string `json:"type"`
			Origin   string `json:"origin"`
			Versions []struct {
				Version int             `json:"version"`
				Schema  json.RawMessage `json:"schema"`
			} `json:"versions"`
		} `json:"types"`
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, ty := range got.Types {
		for _, v := range ty.Versions {
			if err := event.CompileSchema(ty.Type, v.Schema); err != nil {
				t.Errorf("%s version %d: %v", ty.Type, v.Version, err)
			}
			summary = append(summary, fmt.Sprintf("%s %s v%d", ty.Origin, ty.Type, v.Version))
		}
	}
	want := "go badge.awarded v1, go lesson.published v1, go quiz.submitted v1, go quiz.submitted v2"
	if strings.Join(summary, ", ") != want {
		t.Fatalf("GET /v1/schemas lists %v, want %s", summary, want)
	}
}
