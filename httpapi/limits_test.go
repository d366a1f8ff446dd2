package httpapi_test

import (
	"fmt"
	"strings"
	"testing"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/httpapi"
)

// TestInputLimitsAnswer400NamingTheField: each input limit at its
// boundary, through POST /v1/events. A violation is a 400 problem that
// names the field (and the event, in a batch) and stores nothing; what is
// at the limit is stored, and the answer is a CloudEvent the SDK validates.
func TestInputLimitsAnswer400NamingTheField(t *testing.T) {
	h := newHarness(t, harnessOption{bus: eventbus.Config{AllowUnknownTypes: true}})
	data := quizData(3)
	event := func(fields string) string { return `{"type":"quiz.submitted",` + fields + `"data":` + data + `}` }
	str := func(s string) string { return fmt.Sprintf("%q", s) }
	long := func(n int) string { return "/" + strings.Repeat("s", n-1) }
	for _, tc := range []struct {
		name, body, field string
		event             int // the event at fault in a batch, or -1
	}{
		{"source of 256 bytes", event(`"source":` + str(long(256)) + `,`), "source", -1},
		{"source %zz", event(`"source":"%zz",`), "source", -1},
		{"source with a tab", event(`"source":"quiz\tservice",`), "source", -1},
		{"source http://[::1", event(`"source":"http://[::1",`), "source", -1},
		{"source with CR LF", event(`"source":"/quiz\r\nX-Evil: 1",`), "source", -1},
		{"source with a space", event(`"source":"quiz service",`), "source", -1},
		{"source #", event(`"source":"#",`), "source", -1},
		{"source with a lone surrogate", event(`"source":"/q\ud800",`), "source", -1},
		{"type of 256 bytes", `{"type":` + str(strings.Repeat("t", 256)) + `,"data":{}}`, "type", -1},
		{"type with a space", `{"type":"quiz submitted","data":{}}`, "type", -1},
		{"type with a control character", `{"type":"quiz.submitted\u0001","data":{}}`, "type", -1},
		{"type with a lone surrogate", `{"type":"quiz\udbff","data":{}}`, "type", -1},
		{"correlation_id of 256 bytes", event(`"correlation_id":` + str(strings.Repeat("c", 256)) + `,`), "correlation_id", -1},
		{"correlation_id with a control character", event(`"correlation_id":"a\u0007",`), "correlation_id", -1},
		{"causation_id of 256 bytes", event(`"causation_id":` + str(strings.Repeat("c", 256)) + `,`), "causation_id", -1},
		{"subject of white space", event(`"subject":" \t",`), "subject", -1},
		{"subject with a lone surrogate", event(`"subject":"quiz-\ud800",`), "subject", -1},
		{"subject with a low surrogate", event(`"subject":"\udc00quiz",`), "subject", -1},
		{"duplicate key in the envelope", `{"type":"quiz.graded","type":"quiz.submitted","data":` + data + `}`, "type", -1},
		{"duplicate data", `{"type":"quiz.submitted","data":{"a":1},"data":` + data + `}`, "data", -1},
		{"duplicate key in data", `{"type":"note.added","data":{"foo":1,"foo":2}}`, "data.foo", -1},
		{"duplicate key deep in data", `{"type":"note.added","data":{"a":[0,{"b":{"c":1,"c":1}}]}}`, "data.a[1].b.c", -1},
		{"duplicate key by escape", `{"type":"note.added","data":{"foo":1,"f\u006fo":2}}`, "data.foo", -1},
		{"lone surrogate in data", `{"type":"note.added","data":{"x":["\ud800"]}}`, "data.x[0]", -1},
		{"data too deep", `{"type":"note.added","data":` + strings.Repeat("[", 513) + strings.Repeat("]", 513) + `}`, "data", -1},
		{"duplicate key in a batch", `{"events":[` + event("") + `,{"type":"note.added","data":{"k":1,"k":2}}]}`, "data.k", 1},
		{"duplicate envelope key in a batch", `{"events":[` + event("") + `,` + event("") + `,{"subject":"a","subject":"b","type":"t","data":1}]}`, "subject", 2},
		{"lone surrogate in a batch", `{"events":[{"type":"note.added","data":"\udc00"},` + event("") + `]}`, "data", 0},
		{"data too deep in a batch", `{"events":[` + event("") + `,{"type":"t","data":` + strings.Repeat("[", 513) + strings.Repeat("]", 513) + `}]}`, "data", 1},
		{"deep subject in a batch", `{"events":[` + event("") + `,{"type":"t","data":1,"subject":` + strings.Repeat("[", 513) + strings.Repeat("]", 513) + `}]}`, "subject", 1},
		{"source of 256 bytes in a batch", `{"events":[` + event("") + `,` + event(`"source":`+str(long(256))+`,`) + `]}`, "source", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.publish(tc.body).problem(t, 400, httpapi.ProblemInvalidEvent)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
			switch {
			case tc.event < 0 && p.Event != nil:
				t.Errorf("the problem names event %d of a single event", *p.Event)
			case tc.event >= 0 && (p.Event == nil || *p.Event != tc.event):
				t.Errorf("the problem names event %v, want %d (detail %q)", p.Event, tc.event, p.Detail)
			}
			if !strings.Contains(p.Detail, tc.field) {
				t.Errorf("detail %q does not name %s", p.Detail, tc.field)
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d events stored by requests over the limits", n)
	}

	good := []string{
		event(`"source":` + str(long(255)) + `,`),
		event(`"source":"/svc",`),
		event(`"source":"urn:edupulse:quiz",`),
		event(`"source":"https://x.example/a?b#c",`),
		event(`"source":"http://[::1]:8080/x",`),
		`{"type":` + str(strings.Repeat("t", 255)) + `,"data":{}}`,
		`{"type":"note.added","data":{"emoji":"\ud83d\ude00","a":{"a":1},"b":[{"a":1},{"a":2}]}}`,
		`{"type":"note.added","data":` + strings.Repeat("[", 512) + strings.Repeat("]", 512) + `}`,
		event(`"subject":` + str(strings.Repeat("s", 512)) + `,`),
		event(`"subject":"quiz \ud83d\ude00",`),
	}
	for i, body := range good {
		res := h.publish(body)
		if res.status != 201 {
			t.Fatalf("good event %d: %d %s", i, res.status, res.body)
		}
		cloudEvent(t, res.body)
	}
	if n := h.rows(); n != len(good) {
		t.Fatalf("%d events stored, want %d", n, len(good))
	}
}
