package edupulse_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

func TestDecodeValidates(t *testing.T) {
	reg := edupulse.Registry()
	const u1, u2 = `"0190d1e2-0000-7000-8000-000000000001"`, `"0190d1e2-0000-7000-8000-000000000002"`
	cases := []struct {
		name, typ, data string
		wantErr         error
		field           string
	}{
		{"lesson ok", edupulse.TypeLessonPublished, `{"lesson_id":` + u1 + `,"teacher_id":` + u2 + `,"title":"Fractions"}`, nil, ""},
		{"lesson empty title", edupulse.TypeLessonPublished, `{"lesson_id":` + u1 + `,"teacher_id":` + u2 + `,"title":"  "}`, event.ErrInvalid, "title"},
		{"lesson missing title", edupulse.TypeLessonPublished, `{"lesson_id":` + u1 + `,"teacher_id":` + u2 + `}`, event.ErrInvalid, "title"},
		{"lesson bad uuid", edupulse.TypeLessonPublished, `{"lesson_id":"nope","teacher_id":` + u2 + `,"title":"x"}`, event.ErrInvalid, "lesson_id"},
		{"lesson nil uuid", edupulse.TypeLessonPublished, `{"lesson_id":"00000000-0000-0000-0000-000000000000","teacher_id":` + u2 + `,"title":"x"}`, event.ErrInvalid, "lesson_id"},
		{"quiz ok, zero score", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":0}`, nil, ""},
		{"quiz extra field ok", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":3,"added_later":true}`, nil, ""},
		{"quiz missing score", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `}`, event.ErrInvalid, "score_raw"},
		{"quiz null score", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":null}`, event.ErrInvalid, "score_raw"},
		{"quiz fractional score", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":9.5}`, event.ErrInvalid, "score_raw"},
		{"quiz score as string", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":"90"}`, event.ErrInvalid, "score_raw"},
		{"quiz score overflow", edupulse.TypeQuizSubmitted, `{"quiz_id":` + u1 + `,"learner_id":` + u2 + `,"score_raw":99999999999}`, event.ErrInvalid, "score_raw"},
		{"badge ok", edupulse.TypeBadgeAwarded, `{"badge_id":` + u1 + `,"recipient_id":` + u2 + `,"reason":"90+"}`, nil, ""},
		{"badge empty reason", edupulse.TypeBadgeAwarded, `{"badge_id":` + u1 + `,"recipient_id":` + u2 + `,"reason":""}`, event.ErrInvalid, "reason"},
		{"not an object", edupulse.TypeBadgeAwarded, `[1]`, event.ErrInvalid, ""},
		{"not json", edupulse.TypeBadgeAwarded, `{`, event.ErrInvalid, ""},
		{"invalid utf8", edupulse.TypeBadgeAwarded, "{\"reason\":\"\xff\"}", event.ErrInvalid, ""},
		{"unknown type", "quiz.graded", `{}`, event.ErrUnknownType, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := reg.Decode(c.typ, []byte(c.data))
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if p, ok := v.(event.Payload); !ok || p.EventType() != c.typ {
					t.Fatalf("Decode returned %T", v)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			var ve *event.ValidationError
			if c.field != "" && (!errors.As(err, &ve) || ve.Field != c.field) {
				t.Fatalf("error %v does not name field %q", err, c.field)
			}
		})
	}
}

func TestDecodeAs(t *testing.T) {
	q, err := event.DecodeAs[edupulse.QuizSubmitted]([]byte(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":91}`))
	if err != nil || q.ScoreRaw != 91 {
		t.Fatalf("DecodeAs = %+v, %v", q, err)
	}
}

func TestRegistryRejectsClashes(t *testing.T) {
	reg := edupulse.Registry()
	if err := event.Register[edupulse.QuizSubmitted](reg); err != nil {
		t.Fatalf("registering the same type again: %v", err)
	}
	if err := event.Register[impostor](reg); err == nil {
		t.Fatal("a second Go type took a registered name")
	}
	if got := reg.Types(); len(got) != 3 {
		t.Fatalf("Types = %v", got)
	}
}

type impostor struct{}

func (impostor) EventType() string { return edupulse.TypeQuizSubmitted }

// The x-eventbus keywords of each version's schema name the personal data
// the Go type declares: GET /v1/schemas tells readers (the console) what
// erasure treats as personal, and the two must not drift apart.
func TestSchemasNameTheGoTypesPersonalData(t *testing.T) {
	reg := edupulse.Registry()
	for _, ti := range reg.Describe() {
		want, declared := reg.Personal(ti.Type)
		for _, v := range ti.Versions {
			got, err := event.PersonalOfSchema(v.Schema)
			if err != nil {
				t.Fatalf("%s v%d: %v", ti.Type, v.Version, err)
			}
			if !declared {
				if got != nil {
					t.Errorf("%s v%d: the schema names personal data %+v, the Go type none", ti.Type, v.Version, *got)
				}
				continue
			}
			if got == nil || got.DataSubject != want.DataSubject || !slices.Equal(got.Fields, want.Fields) {
				t.Errorf("%s v%d: the schema names %+v, the Go type declares %+v", ti.Type, v.Version, got, want)
			}
		}
	}
}
