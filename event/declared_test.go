package event_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// examplesDir is the example schema directory that the docs show.
const examplesDir = "../examples/schemas"

const okSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
	"properties":{"id":{"type":"string"},"who":{"type":"string"},"note":{"type":"string"}},"required":["id","who"]}`

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if strings.HasSuffix(name, "/") {
			if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSchemaDirectories: good directories declare their types with their
// versions and personal fields; each bad file is named with what is wrong,
// every one of them at once.
func TestSchemaDirectories(t *testing.T) {
	withPersonal := strings.Replace(okSchema, `"required"`, `"x-eventbus-data-subject":"who","x-eventbus-personal":["note"],"required"`, 1)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string   // the declared types, "type:versions", for a good directory
		bad   []string // "file: reason part" for a bad one
	}{
		{"empty", map[string]string{}, "", nil},
		{"two types, two versions", map[string]string{"a.b.v1.json": okSchema, "a.b.v2.json": okSchema, "c.v1.json": okSchema, ".hidden": "x"}, "a.b:2 c:1", nil},
		{"personal keywords", map[string]string{"p.v1.json": withPersonal}, "p:1 personal who [note]", nil},
		{"misnamed", map[string]string{"course.json": okSchema, "c.v0.json": okSchema, "c.V1.json": okSchema, "README.md": "hi"},
			"", []string{"README.md: is not named", "c.V1.json: is not named", "c.v0.json: is not named", "course.json: is not named"}},
		{"a directory", map[string]string{"sub/": ""}, "", []string{"sub: is a directory"}},
		{"bad type name", map[string]string{"a b.v1.json": okSchema}, "", []string{`a b.v1.json: names the type "a b"`}},
		{"not JSON", map[string]string{"x.v1.json": `{"type":`}, "", []string{"x.v1.json: is not valid JSON"}},
		{"empty file", map[string]string{"x.v1.json": " \n"}, "", []string{"x.v1.json: is empty"}},
		{"duplicate key", map[string]string{"x.v1.json": `{"type":"object","type":"array"}`}, "", []string{"x.v1.json: is not valid JSON"}},
		{"not an object", map[string]string{"x.v1.json": `[1]`}, "", []string{"x.v1.json: is not a JSON Schema"}},
		{"not a valid schema", map[string]string{"x.v1.json": `{"type":12}`}, "", []string{"x.v1.json: is not a valid JSON Schema (draft 2020-12): /type"}},
		{"another draft", map[string]string{"x.v1.json": `{"$schema":"http://json-schema.org/draft-07/schema#"}`}, "", []string{"x.v1.json: $schema is http://json-schema.org/draft-07/schema#"}},
		{"remote reference", map[string]string{"x.v1.json": `{"$ref":"https://example.com/s.json"}`}, "", []string{"x.v1.json: is not a valid JSON Schema (draft 2020-12)", "self-contained"}},
		{"bad pattern", map[string]string{"x.v1.json": `{"type":"string","pattern":"("}`}, "", []string{"x.v1.json: is not a valid JSON Schema"}},
		{"skips version 2", map[string]string{"x.v1.json": okSchema, "x.v3.json": okSchema}, "", []string{"x.v3.json: is version 3 of x, but there is no version 2"}},
		{"no version 1", map[string]string{"x.v2.json": okSchema}, "", []string{"x.v2.json: is version 2 of x, but there is no version 1"}},
		{"a Go type", map[string]string{"quiz.submitted.v3.json": okSchema}, "", []string{"quiz.submitted.v3.json: declares quiz.submitted, a type registered in Go"}},
		{"personal without subject", map[string]string{"x.v1.json": strings.Replace(okSchema, `"required"`, `"x-eventbus-personal":["note"],"required"`, 1)}, "",
			[]string{"x.v1.json: has x-eventbus-personal without x-eventbus-data-subject"}},
		{"subject not a property", map[string]string{"x.v1.json": strings.Replace(okSchema, `"required"`, `"x-eventbus-data-subject":"nobody","required"`, 1)}, "",
			[]string{`x.v1.json: x-eventbus-data-subject names "nobody", which is not in the schema's properties`}},
		{"subject not required", map[string]string{"x.v1.json": strings.Replace(okSchema, `"required"`, `"x-eventbus-data-subject":"note","required"`, 1)}, "",
			[]string{`x.v1.json: x-eventbus-data-subject names "note", which the schema does not require`}},
		{"personal not a property", map[string]string{"x.v1.json": strings.Replace(withPersonal, `["note"]`, `["note","secret"]`, 1)}, "",
			[]string{`x.v1.json: x-eventbus-personal lists "secret", which is not in the schema's properties`}},
		{"personal not a list", map[string]string{"x.v1.json": strings.Replace(withPersonal, `["note"]`, `"note"`, 1)}, "",
			[]string{"x.v1.json: x-eventbus-personal must be a list of property names"}},
		{"subject changes", map[string]string{"x.v1.json": withPersonal, "x.v2.json": strings.Replace(withPersonal, `-subject":"who"`, `-subject":"id"`, 1)}, "",
			[]string{`x.v2.json: names "id" as x-eventbus-data-subject, but an earlier version of x names "who"`}},
		{"every bad file at once", map[string]string{"good.v1.json": okSchema, "a.v1.json": `{`, "b.json": okSchema}, "",
			[]string{"a.v1.json: is not valid JSON", "b.json: is not named"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, tc.files)
			types, err := event.ReadSchemaDir(dir, edupulse.Registry())
			if tc.bad == nil {
				if err != nil {
					t.Fatalf("ReadSchemaDir: %v", err)
				}
				var got []string
				for _, dt := range types {
					s := dt.Type + ":" + string(rune('0'+len(dt.Versions)))
					if dt.Personal != nil {
						s += " personal " + dt.Personal.DataSubject + " [" + strings.Join(dt.Personal.Fields, " ") + "]"
					}
					got = append(got, s)
				}
				if strings.Join(got, " ") != tc.want {
					t.Fatalf("declared %q, want %q", strings.Join(got, " "), tc.want)
				}
				return
			}
			var derr *event.SchemaDirError
			if !errors.As(err, &derr) || !errors.Is(err, event.ErrBadSchemaFile) {
				t.Fatalf("ReadSchemaDir: %v (%T), want a *SchemaDirError", err, err)
			}
			var msgs []string
			for _, f := range derr.Files {
				msgs = append(msgs, strings.TrimPrefix(f.Error(), dir+string(filepath.Separator)))
			}
			if len(msgs) != len(tc.bad) && !(len(tc.bad) == 2 && tc.name == "remote reference") {
				t.Fatalf("bad files %q, want %d: %q", msgs, len(tc.bad), tc.bad)
			}
			for i, want := range tc.bad {
				j := min(i, len(msgs)-1)
				if tc.name == "remote reference" {
					j = 0
				}
				if !strings.Contains(msgs[j], want) {
					t.Errorf("bad file %d: %q, want it to say %q", i, msgs[j], want)
				}
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("the error %q does not name the directory", err)
			}
		})
	}
	if _, err := event.ReadSchemaDir(filepath.Join(t.TempDir(), "missing"), nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing directory: %v", err)
	}
}

// TestExampleSchemasDeclare: examples/schemas loads into the EduPulse
// registry, with its personal fields set.
func TestExampleSchemasDeclare(t *testing.T) {
	reg := edupulse.Registry()
	declared, err := event.LoadSchemaDir(reg, examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) != 2 {
		t.Fatalf("declared %d types, want 2", len(declared))
	}
	for typ, want := range map[string]event.PersonalSpec{
		"course.completed":   {DataSubject: "learner_id", Fields: []string{"grade", "feedback"}},
		"forum.post.created": {DataSubject: "author_id", Fields: []string{"body"}},
	} {
		got, ok := reg.Personal(typ)
		if !ok || got.DataSubject != want.DataSubject || !slices.Equal(got.Fields, want.Fields) {
			t.Errorf("Personal(%s) = %+v, %v; want %+v", typ, got, ok, want)
		}
		if reg.Origin(typ) != event.OriginFile {
			t.Errorf("%s has origin %q", typ, reg.Origin(typ))
		}
	}
	if v, _ := reg.Latest("course.completed"); v != 2 {
		t.Fatalf("course.completed latest version %d, want 2", v)
	}
	if _, err := event.LoadSchemaDir(reg, examplesDir); err != nil {
		t.Fatalf("declaring the same types again: %v", err)
	}
	other := writeDir(t, map[string]string{"course.completed.v1.json": okSchema})
	if _, err := event.LoadSchemaDir(reg, other); err == nil || !strings.Contains(err.Error(), "already declared, with other schemas") {
		t.Fatalf("declaring a type again with other schemas: %v", err)
	}
}

// TestDeclaredTypeValidation: data of a declared type is checked against
// the version it names, and the error names the JSON path and the rule of
// each violation, at most event.MaxViolations of them.
func TestDeclaredTypeValidation(t *testing.T) {
	reg := edupulse.Registry()
	if _, err := event.LoadSchemaDir(reg, examplesDir); err != nil {
		t.Fatal(err)
	}
	const (
		course  = `"course_id":"0190d1e2-0000-7000-8000-000000000001"`
		learner = `"learner_id":"0190d1e2-0000-7000-8000-000000000002"`
	)
	v1 := event.SchemaURN("course.completed", 1)
	for _, tc := range []struct {
		name, dataschema, data string
		want                   []string // path rule
		more                   int
	}{
		{"valid, latest", "", `{` + course + `,` + learner + `,"grade":90,"modules":[{"module_id":"m1","score":80}]}`, nil, 0},
		{"valid, version 1", v1, `{` + course + `,` + learner + `,"grade":0,"x":"extra"}`, nil, 0},
		{"missing field", "", `{` + course + `,"grade":90}`, []string{"/learner_id required"}, 0},
		{"wrong type", "", `{` + course + `,` + learner + `,"grade":"A"}`, []string{"/grade type"}, 0},
		{"above the maximum", "", `{` + course + `,` + learner + `,"grade":101}`, []string{"/grade maximum"}, 0},
		{"below the minimum", v1, `{` + course + `,` + learner + `,"grade":-1}`, []string{"/grade minimum"}, 0},
		{"format", "", `{"course_id":"nope",` + learner + `,"grade":1}`, []string{"/course_id format"}, 0},
		{"nested path in an array", "", `{` + course + `,` + learner + `,"grade":1,"modules":[{"module_id":"m1","score":1},{"module_id":"","score":200,"x":1}]}`,
			[]string{"/modules/1/module_id minLength", "/modules/1/score maximum", "/modules/1/x additionalProperties"}, 0},
		{"an array too long", "", `{` + course + `,` + learner + `,"grade":1,"modules":[` + strings.TrimSuffix(strings.Repeat(`{"module_id":"m","score":1},`, 51), ",") + `]}`,
			[]string{"/modules maxItems"}, 0},
		{"capped", "", `{"course_id":1,"learner_id":2,"grade":"x","completed_at":3,"feedback":4,"modules":5}`,
			[]string{"/course_id type", "/learner_id type", "/grade type", "/completed_at type", "/feedback type"}, 1},
		{"not an object", "", `[1,2]`, []string{" type"}, 0},
		// The validator compares numbers exactly: 1e1000000 would cost it a
		// tenth of a second, thousands of times per event.
		{"numbers beyond a float", "", `{` + course + `,` + learner + `,"grade":1e1000000,"modules":[{"module_id":"m","score":-1E+900000},{"module_id":"m","score":1.5e-900000},{"module_id":"m","score":` + strings.Repeat("1", 65) + `}]}`,
			[]string{"/grade number", "/modules/0/score number", "/modules/1/score number", "/modules/2/score number"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reg.CheckAs("course.completed", tc.dataschema, []byte(tc.data))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckAs: %v", err)
				}
				return
			}
			var verr *event.ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("CheckAs: %v, want a ValidationError", err)
			}
			var got []string
			for _, v := range verr.Violations {
				got = append(got, v.Path+" "+v.Rule)
				if !strings.Contains(err.Error(), v.String()) {
					t.Errorf("the message %q does not say %q", err, v)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) || verr.More != tc.more {
				t.Fatalf("violations %q (+%d more), want %q (+%d)", got, verr.More, want, tc.more)
			}
		})
	}
}

// FuzzDeclaredData: whatever data is posted for a declared type, the check
// answers without panicking, and accepts only strict JSON that fits.
func FuzzDeclaredData(f *testing.F) {
	reg := edupulse.Registry()
	if _, err := event.LoadSchemaDir(reg, examplesDir); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{"course_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","grade":9}`,
		`{"grade":1e400}`, `{"modules":[{"score":-0.0}]}`, `[`, `"x"`, `{"a":"\ud800"}`, `{"grade":1,"grade":2}`} {
		f.Add(seed, 0)
		f.Add(seed, 1)
	}
	f.Fuzz(func(t *testing.T, data string, version int) {
		ds := ""
		if version%3 == 1 {
			ds = event.SchemaURN("course.completed", 1)
		}
		_, err := reg.CheckAs("course.completed", ds, []byte(data))
		if err == nil && event.CheckData([]byte(data)) != nil {
			t.Fatalf("accepted %q, which breaks the input limits", data)
		}
		var verr *event.ValidationError
		if errors.As(err, &verr) && len(verr.Violations) > event.MaxViolations {
			t.Fatalf("%d violations reported", len(verr.Violations))
		}
	})
}
