package event_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// wantRule checks that err is a *event.FieldError for field that wraps
// ErrInvalid and rule (nil: err must be nil).
func wantRule(t *testing.T, what string, err error, field string, rule error) {
	t.Helper()
	if rule == nil {
		if err != nil {
			t.Errorf("%s: %v; want it accepted", what, err)
		}
		return
	}
	var fe *event.FieldError
	switch {
	case !errors.As(err, &fe):
		t.Errorf("%s: error %v; want a *event.FieldError", what, err)
	case fe.Field != field:
		t.Errorf("%s: field %q, want %q (%v)", what, fe.Field, field, err)
	case !errors.Is(err, event.ErrInvalid) || !errors.Is(err, rule):
		t.Errorf("%s: %v; want it to wrap ErrInvalid and %v", what, err, rule)
	case len(err.Error()) > 600:
		t.Errorf("%s: a message of %d bytes echoes too much", what, len(err.Error()))
	}
}

func TestTypeLimits(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		rule error
	}{
		{"quiz.submitted", nil},
		{"a", nil},
		{strings.Repeat("a", 255), nil},
		{strings.Repeat("a.", 127) + "a", nil},
		{"Quiz_2-x.v1", nil},
		{"", event.ErrEmpty},
		{strings.Repeat("a", 256), event.ErrTooLong},
		{strings.Repeat("é", 128), event.ErrTooLong},
		{"quiz submitted", event.ErrBadCharacter},
		{" quiz", event.ErrBadCharacter},
		{"quiz\t", event.ErrBadCharacter},
		{"quiz\n.x", event.ErrBadCharacter},
		{"quiz\x00", event.ErrBadCharacter},
		{"quiz\x7f", event.ErrBadCharacter},
		{"quiz\u0085", event.ErrBadCharacter},
		{"quiz\u00a0", event.ErrBadCharacter},
		{"quiz.*", event.ErrBadCharacter},
		{"quiz.#", event.ErrBadCharacter},
		{"quiz..x", event.ErrBadCharacter},
		{".quiz", event.ErrBadCharacter},
		{"quiz.", event.ErrBadCharacter},
		{"quiz\xff", event.ErrBadCharacter},
	} {
		wantRule(t, "type "+event.Quote(tc.typ), event.CheckTypeName(tc.typ), "type", tc.rule)
	}
}

func TestSourceLimits(t *testing.T) {
	long := func(n int) string { return "urn:x:" + strings.Repeat("a", n-6) }
	for _, tc := range []struct {
		source string
		rule   error
	}{
		// Good URI-references: absolute URIs, and relative references.
		{"/svc", nil},
		{"urn:edupulse:quiz", nil},
		{"https://x.example/a?b#c", nil},
		{"quiz-service", nil},
		{"quiz-service/v2", nil},
		{"./a:b", nil},
		{"http://[::1]:8080/x", nil},
		{"http://[2001:db8::7]/", nil},
		{"http://[::ffff:192.0.2.1]/", nil},
		{"http://192.0.2.1/", nil},
		{"http://user:pw@host.example:80/p?q=1&r=%20#frag/?", nil},
		{"mailto:team@edupulse.example", nil},
		{"tag:edupulse.example,2026:quiz", nil},
		{"?", nil},
		{"a/%C3%A9", nil},
		{"http://h.example/%41", nil},
		{"//host.example/p", nil},
		{long(255), nil},
		// Limits.
		{"", event.ErrEmpty},
		{long(256), event.ErrTooLong},
		{strings.Repeat("a", 256), event.ErrTooLong},
		// Not URI-references.
		{"%zz", event.ErrNotURIReference},
		{"%2", event.ErrNotURIReference},
		{"a\tb", event.ErrNotURIReference},
		{"\t", event.ErrNotURIReference},
		{"http://[::1", event.ErrNotURIReference},
		{"http://[::1]x/", event.ErrNotURIReference},
		{"http://[::g]/", event.ErrNotURIReference},
		{"http://[1:2:3:4:5:6:7:8:9]/", event.ErrNotURIReference},
		{"svc\r\n", event.ErrNotURIReference},
		{"svc\nX-Injected: 1", event.ErrNotURIReference},
		{"a b", event.ErrNotURIReference},
		{" /svc", event.ErrNotURIReference},
		{"/svc\x00", event.ErrNotURIReference},
		{"/svc\x7f", event.ErrNotURIReference},
		{"/caf\u00e9", event.ErrNotURIReference},
		{"/svc\xff", event.ErrNotURIReference},
		{"/a{b}", event.ErrNotURIReference},
		{"/a\\b", event.ErrNotURIReference},
		{"/a\"b", event.ErrNotURIReference},
		{"/a<b>", event.ErrNotURIReference},
		{"/a^b", event.ErrNotURIReference},
		{"/a`b", event.ErrNotURIReference},
		{"/a|b", event.ErrNotURIReference},
		{"a#b#c", event.ErrNotURIReference},
		{"1a:b", event.ErrNotURIReference},
		{":a", event.ErrNotURIReference},
		{"http://h:8a/", event.ErrNotURIReference},
		{"http://u@h@x/", event.ErrNotURIReference},
		// URI-references that URL parsers refuse or empty.
		{"http://a%41b/", event.ErrNotURIReference},
		{"#", event.ErrNotURIReference},
		{"//", event.ErrNotURIReference},
	} {
		wantRule(t, "source "+event.Quote(tc.source), event.CheckSource(tc.source), "source", tc.rule)
	}
}

func TestSubjectLimits(t *testing.T) {
	for _, tc := range []struct {
		subject string
		rule    error
	}{
		{"", nil},
		{"quiz-42", nil},
		{"learner/ä ö", nil},
		{"a\tb", nil},
		{strings.Repeat("s", 512), nil},
		{strings.Repeat("s", 513), event.ErrTooLong},
		{"learner-\xc3", event.ErrNotUTF8},
		{"a\x00b", event.ErrBadCharacter},
		{" ", event.ErrEmpty},
		{"\t\n\u00a0\u2028\u3000", event.ErrEmpty},
	} {
		wantRule(t, "subject "+event.Quote(tc.subject), event.CheckSubject(tc.subject), "subject", tc.rule)
	}
}

func TestShortTextLimits(t *testing.T) {
	for _, tc := range []struct {
		text string
		rule error
	}{
		{"", nil},
		{uuid.NewString(), nil},
		{"request 42 / é", nil},
		{strings.Repeat("c", 255), nil},
		{strings.Repeat("c", 256), event.ErrTooLong},
		{"a\tb", event.ErrBadCharacter},
		{"a\r\nb", event.ErrBadCharacter},
		{"a\x00", event.ErrBadCharacter},
		{"a\x7f", event.ErrBadCharacter},
		{"a\u0085", event.ErrBadCharacter},
		{"a\xff", event.ErrNotUTF8},
	} {
		for _, field := range []string{"correlation_id", "causation_id"} {
			wantRule(t, field+" "+event.Quote(tc.text), event.CheckShortText(field, tc.text), field, tc.rule)
		}
	}
}

func TestStrictJSON(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		field      string
		rule       error
	}{
		{"object", `{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e+3}`, "", nil},
		{"keys that differ only by case", `{"a":1,"A":2}`, "", nil},
		{"equal keys in sibling objects", `[{"a":1},{"a":2}]`, "", nil},
		{"equal keys at different depths", `{"a":{"a":{"a":1}}}`, "", nil},
		{"a surrogate pair", `{"emoji":"\ud83d\ude00","E":"\uD83D\uDE00"}`, "", nil},
		{"escapes", `"\" \\ \/ \b \f \n \r \t \u0000 \u00e9 \uffff"`, "", nil},
		{"raw UTF-8", `"é 😀 \u2028"`, "", nil},
		{"many keys", manyKeys(100, false), "", nil},
		{"duplicate key", `{"a":1,"a":2}`, "data.a", event.ErrDuplicateKey},
		{"duplicate key with other values", `{"a":1,"b":2,"a":{"x":1}}`, "data.a", event.ErrDuplicateKey},
		{"duplicate key deep down", `{"x":[1,{"y":{"z":1,"z":2}}]}`, "data.x[1].y.z", event.ErrDuplicateKey},
		{"duplicate key by escape", `{"ab":1,"a\u0062":2}`, "data.ab", event.ErrDuplicateKey},
		{"duplicate key by surrogate pair", `{"😀":1,"\ud83d\ude00":2}`, "data.😀", event.ErrDuplicateKey},
		{"duplicate key in a large object", manyKeys(100, true), "data.k7", event.ErrDuplicateKey},
		{"lone high surrogate", `{"subject":"\ud800"}`, "data.subject", event.ErrLoneSurrogate},
		{"lone high surrogate at the end", `"abc\uDBFF"`, "data", event.ErrLoneSurrogate},
		{"lone low surrogate", `["ok","\udc00x"]`, "data[1]", event.ErrLoneSurrogate},
		{"high then not low", `{"a":{"b":"\ud800\u0041"}}`, "data.a.b", event.ErrLoneSurrogate},
		{"two highs", `"\ud800\ud800"`, "data", event.ErrLoneSurrogate},
		{"reversed pair", `"\ude00\ud83d"`, "data", event.ErrLoneSurrogate},
		{"lone surrogate in a key", `{"ok":1,"k\ud800":1}`, "data", event.ErrLoneSurrogate},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "data.a", event.ErrNotUTF8},
		{"UTF-8 of a surrogate", "\"\xed\xa0\x80\"", "data", event.ErrNotUTF8},
		{"overlong UTF-8", "\"\xc0\xaf\"", "data", event.ErrNotUTF8},
		{"truncated", `{"a":[1,2`, "data.a[1]", event.ErrNotJSON},
		{"trailing data", `{} {}`, "data", event.ErrNotJSON},
		{"control character", "\"a\nb\"", "data", event.ErrNotJSON},
		{"bad escape", `"\x"`, "data", event.ErrNotJSON},
		{"short unicode escape", `"\u12"`, "data", event.ErrNotJSON},
		{"leading zero", `01`, "data", event.ErrNotJSON},
		{"trailing comma", `[1,]`, "data[1]", event.ErrNotJSON},
		{"single quotes", `{'a':1}`, "data", event.ErrNotJSON},
		{"missing", ``, "data", event.ErrEmpty},
		{"null", ` null `, "data", event.ErrEmpty},
		{"too deep", strings.Repeat("[", event.MaxDataDepth+1) + strings.Repeat("]", event.MaxDataDepth+1), "data", event.ErrTooDeep},
		{"as deep as allowed", strings.Repeat("[", event.MaxDataDepth) + strings.Repeat("]", event.MaxDataDepth), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := event.CheckData([]byte(tc.data))
			wantRule(t, "CheckData("+event.Quote(tc.data)+")", err, tc.field, tc.rule)
			if tc.rule == event.ErrNotJSON && json.Valid([]byte(tc.data)) {
				t.Errorf("encoding/json takes %s, CheckData calls it not JSON", tc.data)
			}
			if tc.rule == nil && !json.Valid([]byte(tc.data)) {
				t.Errorf("CheckData takes %s, which encoding/json refuses", tc.data)
			}
		})
	}
}

// TestEncodingJSONIsLax is why the strict check exists: what encoding/json
// lets through that the bus must refuse.
func TestEncodingJSONIsLax(t *testing.T) {
	var v map[string]string
	if err := json.Unmarshal([]byte(`{"a":"x","a":"\ud800"}`), &v); err != nil || v["a"] != "\ufffd" {
		t.Fatalf("encoding/json got stricter (%v, %q): the strict check may be simpler now", err, v["a"])
	}
}

// manyKeys is an object of n keys k0..k(n-1), with k7 again at the end if
// dup.
func manyKeys(n int, dup bool) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	if dup {
		sb.WriteString(`,"k7":0`)
	}
	sb.WriteByte('}')
	return sb.String()
}

func TestCheckDraftNamesEachField(t *testing.T) {
	good := event.Draft{Type: "quiz.submitted", Source: "/quiz", Subject: "quiz-1", OccurredAt: time.Now(),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Data: json.RawMessage(`{"a":1}`)}
	if err := event.CheckDraft(&good); err != nil {
		t.Fatalf("a good draft: %v", err)
	}
	noSource := good
	noSource.Source = "" // the bus fills it
	if err := event.CheckDraft(&noSource); err != nil {
		t.Fatalf("a draft without a source: %v", err)
	}
	for _, tc := range []struct {
		field string
		rule  error
		edit  func(*event.Draft)
	}{
		{"type", event.ErrTooLong, func(d *event.Draft) { d.Type = strings.Repeat("t", 256) }},
		{"source", event.ErrTooLong, func(d *event.Draft) { d.Source = "/" + strings.Repeat("s", 255) }},
		{"source", event.ErrNotURIReference, func(d *event.Draft) { d.Source = "%zz" }},
		{"subject", event.ErrEmpty, func(d *event.Draft) { d.Subject = "  " }},
		{"traceparent", event.ErrBadCharacter, func(d *event.Draft) { d.TraceParent = "00-\x00" }},
		{"tracestate", event.ErrNotUTF8, func(d *event.Draft) { d.TraceState = "a=\xff" }},
		{"occurred_at", event.ErrOutOfRange, func(d *event.Draft) { d.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"occurred_at", event.ErrOutOfRange, func(d *event.Draft) { d.OccurredAt = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"data.a", event.ErrDuplicateKey, func(d *event.Draft) { d.Data = json.RawMessage(`{"a":1,"a":1}`) }},
		{"data", event.ErrEmpty, func(d *event.Draft) { d.Data = nil }},
	} {
		d := good
		tc.edit(&d)
		wantRule(t, tc.field, event.CheckDraft(&d), tc.field, tc.rule)
	}
}
