package wire_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
)

// TestTypesMatchTheOpenAPIDocument: each wire type has exactly the
// members of its schema in the API's OpenAPI document, and leaves out
// (omitempty, omitzero) exactly those the schema does not require. The
// httpapi tests validate real answers against the document; this keeps
// the client's side, which decodes them, in step with it too.
func TestTypesMatchTheOpenAPIDocument(t *testing.T) {
	raw, err := os.ReadFile("../openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"NewEvent": wire.NewEvent{}, "NewEventBatch": wire.NewEventBatch{}, "EventList": wire.EventList{},
		"EventPage": wire.EventPage{}, "StreamPage": wire.StreamPage{}, "Status": wire.Status{},
		"PartitionState": wire.PartitionState{}, "Parked": wire.Parked{}, "RetryResult": wire.RetryResult{},
		"ReplayRequest": wire.ReplayRequest{}, "ReplayResult": wire.ReplayResult{}, "ReplayPlan": wire.ReplayPlan{},
		"DeadLetter": wire.DeadLetter{}, "DeadLetterList": wire.DeadLetterList{}, "RequeueRequest": wire.RequeueRequest{},
		"RequeueResult": wire.RequeueResult{}, "Ready": wire.Ready{}, "Problem": wire.Problem{},
		"Personal": wire.Personal{}, "Erasure": wire.Erasure{},
	} {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("the document has no schema %s", name)
			continue
		}
		var members, always []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			tag := typ.Field(i).Tag.Get("json")
			member, opts, _ := strings.Cut(tag, ",")
			members = append(members, member)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				always = append(always, member)
			}
		}
		var props []string
		for p := range schema.Properties {
			props = append(props, p)
		}
		slices.Sort(members)
		slices.Sort(props)
		slices.Sort(always)
		required := slices.Sorted(slices.Values(schema.Required))
		if !slices.Equal(members, props) {
			t.Errorf("wire.%s has the members %v; the schema %v", name, members, props)
		}
		if !slices.Equal(always, required) {
			t.Errorf("wire.%s always writes %v; the schema requires %v", name, always, required)
		}
	}
}

// TestSeconds: a duration travels as seconds with millisecond precision;
// a negative one as 0 (the status once answered -0.001 when the database's
// clock ran a little ahead); a non-number is refused.
func TestSeconds(t *testing.T) {
	b, err := json.Marshal(wire.Seconds(1500 * time.Millisecond))
	if err != nil || string(b) != "1.500" {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var s wire.Seconds
	if err := json.Unmarshal([]byte("2.25"), &s); err != nil || s.Duration() != 2250*time.Millisecond {
		t.Fatalf("unmarshal: %v %v", s, err)
	}
	if b, err := json.Marshal(wire.Seconds(-500 * time.Microsecond)); err != nil || string(b) != "0.000" {
		t.Fatalf("marshal a negative duration: %s %v", b, err)
	}
	if err := json.Unmarshal([]byte("-0.001"), &s); err != nil || s != 0 {
		t.Fatalf("unmarshal a negative duration: %v %v", s, err)
	}
	for _, bad := range []string{`"1"`, `1e300`, `true`, `null1`} {
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("unmarshal %s: no error", bad)
		}
	}
}
