package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	cetypes "github.com/cloudevents/sdk-go/v2/types"

	"github.com/edupulse/eventbus/event"
)

// FuzzCheckJSON checks the strict JSON check against encoding/json: what
// it accepts, encoding/json accepts, and reads without a repeated key or a
// replaced character; what it refuses as not JSON, encoding/json refuses;
// a repeated key or a lone surrogate it reports in valid JSON,
// encoding/json's reading shows; and valid JSON that encoding/json reads
// without either, it takes.
//
//	go test -fuzz FuzzCheckJSON ./event/
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e+3}`, `{"a":1,"a":2}`, `{"ab":1,"a\u0062":2}`,
		`{"x":[1,{"y":{"z":1,"z":2}}]}`, `{"😀":1,"\ud83d\ude00":2}`, `"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud83d\ude00"`,
		`{"k\ud800":1}`, `{"\ud800":1,"\udc00":2}`, "\"\xff\"", "\"\xed\xa0\x80\"", `"\u0000\ufffd"`, "\"\ufffd\"", `[1,]`, `01`, `1.`, `-`,
		`{"a" 1}`, `{} {}`, ` [ ] `, `"\/\b\f\n\r\t"`, `1e-7`, `[[[[[[[[[[]]]]]]]]]]`, manyKeys(40, true), manyKeys(40, false),
		`{"a":{"b":1},"c":{"b":2}}`, `[{"a":1},{"a":1}]`, `tru`, `nul`, `"`, `"\u12"`, `"\x"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := event.CheckJSON(b, 0)
		valid := json.Valid(b)
		dup, replaced := laxRead(b)
		if err == nil {
			if !valid || !utf8.Valid(b) || dup {
				t.Fatalf("CheckJSON took %q: json.Valid %v, UTF-8 %v, a repeated key %v", b, valid, utf8.Valid(b), dup)
			}
			if replaced && !bytes.Contains(b, []byte("\ufffd")) && !bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`)) {
				t.Fatalf("CheckJSON took %q, which encoding/json reads with a replaced character", b)
			}
			return
		}
		var fe *event.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, event.ErrInvalid) || fe.Reason == "" {
			t.Fatalf("CheckJSON(%q): %v; want a *FieldError wrapping ErrInvalid", b, err)
		}
		switch {
		case errors.Is(err, event.ErrNotJSON):
			if valid {
				t.Fatalf("CheckJSON calls %q not JSON; encoding/json takes it: %v", b, err)
			}
		case errors.Is(err, event.ErrNotUTF8):
			if utf8.Valid(b) {
				t.Fatalf("CheckJSON calls %q not UTF-8: %v", b, err)
			}
		// In JSON that breaks off later, the first fault in reading order
		// is reported: a repeated key or a lone surrogate before the break.
		case errors.Is(err, event.ErrDuplicateKey):
			if valid && !dup {
				t.Fatalf("CheckJSON finds a repeated key in %q that encoding/json does not: %v", b, err)
			}
		case errors.Is(err, event.ErrLoneSurrogate):
			if valid && !replaced {
				t.Fatalf("CheckJSON finds a lone surrogate in %q that encoding/json reads unreplaced: %v", b, err)
			}
		default:
			t.Fatalf("CheckJSON(%q): %v, a rule it has no business with", b, err)
		}
		if valid && utf8.Valid(b) && !dup && !replaced {
			t.Fatalf("CheckJSON refuses %q, which encoding/json reads without a repeated key or a replaced character: %v", b, err)
		}
	})
}

// laxRead reads b with encoding/json's tokenizer and reports whether an
// object holds a key twice, and whether a string (or key) came out holding
// U+FFFD.
func laxRead(b []byte) (dup, replaced bool) {
	type object struct {
		keys      map[string]bool
		expectKey bool
	}
	var stack []*object // nil for an array
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1] != nil {
			stack[n-1].expectKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return dup, replaced
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &object{keys: map[string]bool{}, expectKey: true})
			case '[':
				stack = append(stack, nil)
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if strings.ContainsRune(v, utf8.RuneError) {
				replaced = true
			}
			if n := len(stack); n > 0 && stack[n-1] != nil && stack[n-1].expectKey {
				top := stack[n-1]
				dup = dup || top.keys[v]
				top.keys[v], top.expectKey = true, false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// FuzzCheckSource: a source CheckSource accepts is at most 255 bytes of
// printable ASCII, which net/url and the CloudEvents SDK read as a
// non-empty URI-reference; one it refuses gets a *FieldError for "source".
//
//	go test -fuzz FuzzCheckSource ./event/
func FuzzCheckSource(f *testing.F) {
	for _, seed := range []string{
		"/svc", "urn:edupulse:quiz", "https://x.example/a?b#c", "quiz-service", "%zz", "a\tb", "http://[::1", "svc\r\n", "#", "//", "?",
		"http://[::1]:80/x", "1a:b", "./1a:b", "http://a%41b/", "http://[v1.x]/", "mailto:a@b", "http://u@h@x/", "http://[fe80::1%25en0]/",
		"http://h:8a/", "//h/p", "///p", "a:", "a:#", "http://[::ffff:1.2.3.4]/", "http://[1::2::3]/", "http://%C3%A9/", strings.Repeat("a", 256),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := event.CheckSource(s)
		if err != nil {
			var fe *event.FieldError
			if !errors.As(err, &fe) || fe.Field != "source" || !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("CheckSource(%q): %v; want a *FieldError for source", s, err)
			}
			return
		}
		if s == "" || len(s) > 255 {
			t.Fatalf("CheckSource took %q, of %d bytes", s, len(s))
		}
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] >= 0x7f {
				t.Fatalf("CheckSource took %q, with the byte %#02x", s, s[i])
			}
		}
		if _, err := url.Parse(s); err != nil {
			t.Fatalf("CheckSource took %q, which net/url refuses: %v", s, err)
		}
		ref := cetypes.ParseURIRef(s)
		if ref == nil || strings.TrimSpace(ref.String()) == "" {
			t.Fatalf("CheckSource took %q, which the CloudEvents SDK reads as no source", s)
		}
	})
}
