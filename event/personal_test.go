package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/event"
)

type declared struct {
	Who  string `json:"who"`
	Note string `json:"note"`
}

func (declared) EventType() string { return "note.declared" }

func (declared) PersonalData() event.PersonalSpec {
	return event.PersonalSpec{DataSubject: "who", Fields: []string{"note"}}
}

func TestPersonalOf(t *testing.T) {
	reg := event.NewRegistry()
	if err := event.Register[declared](reg); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetPersonal("course.completed", event.PersonalSpec{DataSubject: "student", Fields: []string{"grade"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []event.PersonalSpec{{}, {DataSubject: "a", Fields: []string{"b", "b"}}, {DataSubject: "a", Fields: []string{"a"}}, {DataSubject: "a", Fields: []string{""}}} {
		if err := reg.SetPersonal("x.y", bad); err == nil {
			t.Errorf("SetPersonal(%+v) accepted", bad)
		}
	}
	upper := "0190D1E2-7C4A-7B3E-8F00-1234567890AB"
	for _, tc := range []struct {
		name     string
		d        event.Draft
		subject  string // "" for no personal data
		errField string
	}{
		{"Go declaration", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"who":"ann","note":"n"}`)}, "ann", ""},
		{"SetPersonal", event.Draft{Type: "course.completed", Data: json.RawMessage(`{"student":"` + upper + `","grade":"B"}`)}, strings.ToLower(upper), ""},
		{"no subject, no personal value", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"note":null}`)}, "", ""},
		{"personal value without its subject", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"note":"n"}`)}, "", "data.who"},
		{"subject not a string", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"who":7,"note":"n"}`)}, "", "data.who"},
		{"subject too long", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"who":"` + strings.Repeat("x", 256) + `","note":"n"}`)}, "", "data.who"},
		{"per event", event.Draft{Type: "other", Data: json.RawMessage(`{"a":1}`), Personal: &event.PersonalData{DataSubject: "s", Fields: []string{"a"}}}, "s", ""},
		{"per event on a declared type", event.Draft{Type: "note.declared", Data: json.RawMessage(`{"who":"a","note":"n"}`), Personal: &event.PersonalData{DataSubject: "s", Fields: []string{"note"}}}, "", "personal"},
		{"per event, unknown field", event.Draft{Type: "other", Data: json.RawMessage(`{"a":1}`), Personal: &event.PersonalData{DataSubject: "s", Fields: []string{"a", "b"}}}, "", "personal.fields[1]"},
		{"per event, reserved field", event.Draft{Type: "other", Data: json.RawMessage(`{"eventbus:sealed":1}`), Personal: &event.PersonalData{DataSubject: "s", Fields: []string{event.SealedKey}}}, "", "personal.fields[0]"},
		{"per event, control character", event.Draft{Type: "other", Data: json.RawMessage(`{"a":1}`), Personal: &event.PersonalData{DataSubject: "s\n", Fields: []string{"a"}}}, "", "personal.data_subject"},
		{"undeclared", event.Draft{Type: "other", Data: json.RawMessage(`{"a":1}`)}, "", ""},
	} {
		p, ok, err := reg.PersonalOf(&tc.d, 3)
		var pe *event.PersonalError
		switch {
		case tc.errField != "":
			if !errors.As(err, &pe) || pe.Field != tc.errField || pe.Index != 3 || !errors.Is(err, event.ErrInvalid) {
				t.Errorf("%s: %v, want a PersonalError at %s of event 3", tc.name, err, tc.errField)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case ok != (tc.subject != "") || p.DataSubject != tc.subject:
			t.Errorf("%s: %+v %v, want subject %q", tc.name, p, ok, tc.subject)
		}
	}
}

// badge is a payload whose personal field is required and validated, as
// edupulse.BadgeAwarded's reason is.
type badge struct {
	BadgeID     string `json:"badge_id"`
	RecipientID string `json:"recipient_id"`
	Reason      string `json:"reason"`
}

func (badge) EventType() string { return "test.badge" }

func (badge) PersonalData() event.PersonalSpec {
	return event.PersonalSpec{DataSubject: "recipient_id", Fields: []string{"reason"}}
}

func (b badge) Validate() error {
	if b.Reason == "" {
		return event.Invalid("test.badge", "reason", "must not be empty")
	}
	return nil
}

// A typed handler must still get an erased event (a replay of the audit
// trail, say): its personal fields at their zero value, not a decode error
// that would dead-letter it.
func TestDecodeEnvelopeAsReadsAnErasedEvent(t *testing.T) {
	erased := []byte(`{"badge_id":"b1","recipient_id":"r1","reason":null}`)
	for _, tc := range []struct {
		name    string
		env     event.Envelope
		wantErr bool
	}{
		{"erased", event.Envelope{Erased: true, Data: erased}, false},
		{"not erased, null personal field", event.Envelope{Data: erased}, true},
		{"erased, non-personal field missing", event.Envelope{Erased: true, Data: []byte(`{"recipient_id":"r1","reason":null}`)}, true},
		{"erased, field of the wrong kind", event.Envelope{Erased: true, Data: []byte(`{"badge_id":1,"recipient_id":"r1","reason":null}`)}, true},
		{"whole", event.Envelope{Data: []byte(`{"badge_id":"b1","recipient_id":"r1","reason":"streak"}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := event.DecodeEnvelopeAs[badge](tc.env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("DecodeEnvelopeAs = %+v, %v; want error %v", b, err, tc.wantErr)
			}
			if err == nil && tc.env.Erased && b.Reason != "" {
				t.Fatalf("erased reason decoded as %q", b.Reason)
			}
		})
	}
}
