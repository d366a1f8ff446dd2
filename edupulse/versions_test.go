package edupulse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

func genUUID(t *rapid.T, label string) uuid.UUID {
	var id uuid.UUID
	copy(id[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, label))
	if id == uuid.Nil {
		id[15] = 1
	}
	return id
}

// genQuizV1 draws the data of a valid quiz.submitted version 1 event as a
// producer might write it: any key order, any white space, extra fields.
func genQuizV1(t *rapid.T) (string, edupulse.QuizSubmitted) {
	q := edupulse.QuizSubmitted{QuizID: genUUID(t, "quiz"), LearnerID: genUUID(t, "learner"), ScoreRaw: rapid.Int32().Draw(t, "score")}
	members := []string{
		fmt.Sprintf(`"quiz_id":"%s"`, q.QuizID),
		fmt.Sprintf(`"learner_id":"%s"`, q.LearnerID),
		fmt.Sprintf(`"score_raw":%d`, q.ScoreRaw),
	}
	if rapid.Bool().Draw(t, "extra") {
		members = append(members, `"note":`+string(must(json.Marshal(rapid.String().Draw(t, "note")))))
	}
	perm := rapid.Permutation(members).Draw(t, "order")
	space := rapid.SampledFrom([]string{"", " ", "\n  ", "\t"}).Draw(t, "space")
	return "{" + space + strings.Join(perm, ","+space) + space + "}", q
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestUpcastingRoundTripsValidData: any valid version 1 data upcasts to
// valid version 2 data (its schema and the Go type accept it) that keeps
// every field and value, with max_score null; the version 1 bytes are
// left as they were and the rest of the bytes are kept; upcasting is what
// every reader gets, and the stored version comes back unchanged.
func TestUpcastingRoundTripsValidData(t *testing.T) {
	reg := edupulse.Registry()
	v1 := event.SchemaURN(edupulse.TypeQuizSubmitted, 1)
	v2 := event.SchemaURN(edupulse.TypeQuizSubmitted, 2)
	rapid.Check(t, func(t *rapid.T) {
		data, want := genQuizV1(t)
		orig := []byte(data)
		urn, err := reg.CheckAs(edupulse.TypeQuizSubmitted, v1, orig)
		if err != nil || urn != v1 {
			t.Fatalf("valid version 1 data %s refused: %v", data, err)
		}
		up, latest, err := reg.UpcastData(edupulse.TypeQuizSubmitted, 1, orig)
		if err != nil || latest != 2 {
			t.Fatalf("upcast %s: %v", data, err)
		}
		if string(orig) != data {
			t.Fatalf("upcasting changed its input: %s", orig)
		}
		if !bytes.HasPrefix(up, bytes.TrimRight(orig[:len(orig)-1], " \t\n")) {
			t.Fatalf("upcast %s to %s: the version 1 bytes are not kept", data, up)
		}
		if _, err := reg.CheckAs(edupulse.TypeQuizSubmitted, v2, up); err != nil {
			t.Fatalf("upcast data %s is not valid version 2: %v", up, err)
		}
		got, err := event.DecodeAs[edupulse.QuizSubmitted](up)
		if err != nil || got.QuizID != want.QuizID || got.LearnerID != want.LearnerID || got.ScoreRaw != want.ScoreRaw || got.MaxScore != nil {
			t.Fatalf("upcast data %s decodes to %+v, %v; want %+v with max_score null", up, got, err, want)
		}
		// Upcasting again changes nothing.
		again, err := edupulse.UpcastQuizSubmittedV1(up)
		if err != nil || !bytes.Equal(again, up) {
			t.Fatalf("upcasting version 2 data again: %s, %v", again, err)
		}

		// Through the read transform: latest by default, stored when asked.
		env := event.Envelope{Type: edupulse.TypeQuizSubmitted, DataSchema: v1, Data: orig}
		if rapid.Bool().Draw(t, "written before versions") {
			env.DataSchema = "" // a row from before dataschema was stored: version 1
		}
		latestEvents := []event.Envelope{env}
		if err := reg.Upcast(context.Background(), latestEvents); err != nil {
			t.Fatal(err)
		}
		if latestEvents[0].DataSchema != v2 || !bytes.Equal(latestEvents[0].Data, up) {
			t.Fatalf("read transform: %s %s, want %s %s", latestEvents[0].DataSchema, latestEvents[0].Data, v2, up)
		}
		storedEvents := []event.Envelope{env}
		if err := reg.Upcast(event.WithStoredVersions(context.Background()), storedEvents); err != nil {
			t.Fatal(err)
		}
		if storedEvents[0].DataSchema != v1 || string(storedEvents[0].Data) != data {
			t.Fatalf("stored read: %s %s, want %s %s", storedEvents[0].DataSchema, storedEvents[0].Data, v1, data)
		}
	})
}

// TestSchemasAgreeWithGoTypes: every value of the Go types, encoded, is
// valid against the schema of its latest version, so that the schemas
// GET /v1/schemas serves describe what Go producers send.
func TestSchemasAgreeWithGoTypes(t *testing.T) {
	reg := edupulse.Registry()
	text := rapid.StringMatching(`[A-Za-z0-9][A-Za-z0-9 .,!?'-]{0,40}`)
	rapid.Check(t, func(t *rapid.T) {
		var p event.Payload
		switch rapid.IntRange(0, 2).Draw(t, "type") {
		case 0:
			p = edupulse.LessonPublished{LessonID: genUUID(t, "lesson"), TeacherID: genUUID(t, "teacher"), Title: text.Draw(t, "title")}
		case 1:
			q := edupulse.QuizSubmitted{QuizID: genUUID(t, "quiz"), LearnerID: genUUID(t, "learner"), ScoreRaw: rapid.Int32().Draw(t, "score")}
			if rapid.Bool().Draw(t, "max") {
				m := rapid.Int32Range(1, 1<<31-1).Draw(t, "max_score")
				q.MaxScore = &m
			}
			p = q
		case 2:
			p = edupulse.BadgeAwarded{BadgeID: genUUID(t, "badge"), RecipientID: genUUID(t, "recipient"), Reason: text.Draw(t, "reason")}
		}
		data := must(json.Marshal(p))
		latest, _ := reg.Latest(p.EventType())
		for v := 1; v <= latest; v++ {
			if v < latest && p.EventType() == edupulse.TypeQuizSubmitted && bytes.Contains(data, []byte(`"max_score"`)) {
				continue // version 1 data has no max_score; its schema allows other fields all the same
			}
			if _, err := reg.CheckAs(p.EventType(), event.SchemaURN(p.EventType(), v), data); err != nil {
				t.Fatalf("%s version %d refuses %s: %v", p.EventType(), v, data, err)
			}
		}
	})
}

// TestVersionErrorsNameThePath: data of an older version is checked
// against that version's schema, and the error names each path and rule;
// a dataschema that names no version of the type is refused.
func TestVersionErrorsNameThePath(t *testing.T) {
	reg := edupulse.Registry()
	v1 := event.SchemaURN(edupulse.TypeQuizSubmitted, 1)
	_, err := reg.CheckAs(edupulse.TypeQuizSubmitted, v1, []byte(`{"quiz_id":"nope","score_raw":"7"}`))
	var verr *event.ValidationError
	if !errorsAs(err, &verr) || verr.Version != 1 {
		t.Fatalf("CheckAs: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"/learner_id: is required", "/quiz_id: must be a valid uuid", "/score_raw: must be integer, not string"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	for _, bad := range []string{"urn:edupulse:schema:quiz.submitted:3", "urn:edupulse:schema:badge.awarded:1", "https://example.com/quiz.json", "urn:edupulse:schema:quiz.submitted:01"} {
		_, err := reg.CheckAs(edupulse.TypeQuizSubmitted, bad, []byte(`{}`))
		var ferr *event.FieldError
		if !errorsAs(err, &ferr) || ferr.Field != "dataschema" {
			t.Errorf("dataschema %s: %v, want a FieldError for dataschema", bad, err)
		}
	}
}

func errorsAs[T error](err error, target *T) bool { return errors.As(err, target) }
