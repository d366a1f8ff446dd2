package event_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/event"
)

type generated struct {
	ID     uuid.UUID         `json:"id"`
	Name   string            `json:"name"`
	Small  int16             `json:"small"`
	Byte   uint8             `json:"byte"`
	Ratio  float64           `json:"ratio"`
	On     bool              `json:"on"`
	Maybe  *int              `json:"maybe"`
	Tags   []string          `json:"tags,omitempty"`
	Counts map[string]int    `json:"counts,omitempty"`
	At     time.Time         `json:"at"`
	Inner  struct{ N int64 } `json:"inner"`
	Free   json.RawMessage   `json:"free,omitempty"`
}

func (generated) EventType() string { return "test.generated" }

// TestGeneratedSchemaAcceptsEncodedValues: the schema Register generates
// for a Go type without versions is a valid draft 2020-12 schema that
// accepts every value of the type, encoded, and refuses a wrong type.
func TestGeneratedSchemaAcceptsEncodedValues(t *testing.T) {
	raw := event.GenerateSchema(reflect.TypeOf(generated{}))
	dir := writeDir(t, map[string]string{"test.generated.v1.json": string(raw)})
	reg := event.NewRegistry()
	if _, err := event.LoadSchemaDir(reg, dir); err != nil {
		t.Fatalf("the generated schema %s: %v", raw, err)
	}
	rapid.Check(t, func(t *rapid.T) {
		v := generated{ID: uuid.New(), Name: rapid.String().Draw(t, "name"), Small: rapid.Int16().Draw(t, "small"),
			Byte: rapid.Uint8().Draw(t, "byte"), Ratio: rapid.Float64Range(-1e300, 1e300).Draw(t, "ratio"), On: rapid.Bool().Draw(t, "on"),
			Tags: rapid.SliceOf(rapid.String()).Draw(t, "tags"), At: time.Unix(rapid.Int64Range(0, 1<<33).Draw(t, "at"), 0).UTC()}
		if rapid.Bool().Draw(t, "maybe") {
			n := rapid.Int().Draw(t, "n")
			v.Maybe = &n
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CheckAs("test.generated", "", data); err != nil {
			t.Fatalf("the generated schema refuses %s: %v", data, err)
		}
	})
	if _, err := reg.CheckAs("test.generated", "", []byte(`{"id":"x","small":70000}`)); err == nil {
		t.Fatal("the generated schema accepts a bad id and an int16 of 70000")
	}
	if err := event.Register[generated](event.NewRegistry()); err != nil {
		t.Fatalf("Register without versions: %v", err)
	}
}

// TestRegisterChecksVersions: versions in order from 1, an upcaster for
// each after the first, none for the first, and schemas that compile.
func TestRegisterChecksVersions(t *testing.T) {
	schema := json.RawMessage(`{"type":"object"}`)
	up := func(d json.RawMessage) (json.RawMessage, error) { return d, nil }
	for _, tc := range []struct {
		name     string
		versions []event.Version
		want     string
	}{
		{"out of order", []event.Version{{Number: 2, Schema: schema}}, "listed as number 2"},
		{"upcaster on version 1", []event.Version{{Number: 1, Schema: schema, Upcast: up}}, "no version before it"},
		{"no upcaster", []event.Version{{Number: 1, Schema: schema}, {Number: 2, Schema: schema}}, "needs an upcaster from version 1"},
		{"bad schema", []event.Version{{Number: 1, Schema: json.RawMessage(`{"type":"nothing"}`)}}, "not a valid JSON Schema"},
		{"not JSON", []event.Version{{Number: 1, Schema: json.RawMessage(`{`)}}, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := event.Register[generated](event.NewRegistry(), tc.versions...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Register: %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestCheckDataSchema: a dataschema is an absolute URI of at most 255
// bytes, or nothing.
func TestCheckDataSchema(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "urn:edupulse:schema:quiz.submitted:2": true, "https://schemas.example/quiz/2.json": true,
		"quiz v2": false, "/schemas/quiz/2": false, "urn:" + strings.Repeat("x", 252): false, "urn:a\x01b": false,
	} {
		err := event.CheckDataSchema(s)
		var fe *event.FieldError
		if ok != (err == nil) || (err != nil && (!errors.As(err, &fe) || fe.Field != "dataschema")) {
			t.Errorf("CheckDataSchema(%q): %v", s, err)
		}
	}
	if typ, v, ok := event.ParseSchemaURN("urn:edupulse:schema:a:b.c:12"); !ok || typ != "a:b.c" || v != 12 {
		t.Errorf("ParseSchemaURN: %q %d %v", typ, v, ok)
	}
	for _, bad := range []string{"urn:edupulse:schema:x:0", "urn:edupulse:schema:x:-1", "urn:edupulse:schema::1", "urn:edupulse:schema:x:1.0", "urn:other:x:1"} {
		if _, _, ok := event.ParseSchemaURN(bad); ok {
			t.Errorf("ParseSchemaURN(%q) accepted", bad)
		}
	}
}
