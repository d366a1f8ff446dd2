package erasure

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/event"
)

// jsonValue generates any JSON value, nested a little.
func jsonValue(depth int) *rapid.Generator[any] {
	return rapid.Custom(func(t *rapid.T) any {
		kinds := 6
		if depth <= 0 {
			kinds = 4
		}
		switch rapid.IntRange(0, kinds-1).Draw(t, "kind") {
		case 0:
			return rapid.String().Draw(t, "s")
		case 1:
			return rapid.Int64().Draw(t, "i")
		case 2:
			return rapid.Bool().Draw(t, "b")
		case 3:
			return nil
		case 4:
			return rapid.SliceOfN(jsonValue(depth-1), 0, 3).Draw(t, "a")
		default:
			return rapid.MapOfN(rapid.String(), jsonValue(depth-1), 0, 3).Draw(t, "o")
		}
	})
}

func decodeAny(t interface{ Fatalf(string, ...any) }, data []byte) map[string]any {
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, data)
	}
	return v
}

// TestSealOpenRoundTrip: for any JSON object and any choice of personal
// fields, sealing then opening gives equal JSON back; the sealed form holds
// null for every personal field that had a value; opening without the key
// gives null for them, the keys present, and the rest unchanged.
func TestSealOpenRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		obj := rapid.MapOfN(rapid.String(), jsonValue(2), 1, 8).Draw(rt, "data")
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		var fields []string
		for _, k := range keys {
			if rapid.Bool().Draw(rt, "personal "+k) {
				fields = append(fields, k)
			}
		}
		// Pretty or compact: the producer's bytes are kept as they are.
		var data []byte
		var err error
		if rapid.Bool().Draw(rt, "indent") {
			data, err = json.MarshalIndent(obj, "", "  ")
		} else {
			data, err = json.Marshal(obj)
		}
		if err != nil {
			rt.Fatal(err)
		}
		key := make([]byte, KeySize)
		_, _ = rand.Read(key)
		aead, err := newAEAD(key)
		if err != nil {
			rt.Fatal(err)
		}
		id := uuid.New()
		p := event.PersonalData{DataSubject: rapid.StringN(1, 20, 255).Draw(rt, "subject"), Fields: fields}
		stored, sealed, err := sealData(id, p, data, aead)
		if err != nil {
			rt.Fatal(err)
		}
		want := decodeAny(rt, data)
		withValue := 0
		for _, f := range fields {
			if want[f] != nil {
				withValue++
			}
		}
		if sealed != (withValue > 0) {
			rt.Fatalf("sealed = %v with %d personal fields holding a value", sealed, withValue)
		}
		if !sealed {
			if !bytes.Equal(stored, data) {
				rt.Fatalf("unsealed data changed: %s -> %s", data, stored)
			}
			return
		}
		raw := decodeAny(rt, stored)
		for _, f := range fields {
			if raw[f] != nil {
				rt.Fatalf("stored %q = %v, want null", f, raw[f])
			}
		}
		sm, ms, at, ok, err := sealedOf(stored)
		if err != nil || !ok {
			rt.Fatalf("sealedOf: %v %v", ok, err)
		}
		opened, err := openData(id, stored, sm, ms, at, aead)
		if err != nil {
			rt.Fatal(err)
		}
		if got := decodeAny(rt, opened); !reflect.DeepEqual(got, want) {
			rt.Fatalf("round trip:\n got %v\nwant %v\nstored %s", got, want, stored)
		}
		erased, err := openData(id, stored, sm, ms, at, nil)
		if err != nil {
			rt.Fatal(err)
		}
		got := decodeAny(rt, erased)
		for k, v := range want {
			wantV := v
			if contains(fields, k) {
				wantV = nil
				if _, present := got[k]; !present {
					rt.Fatalf("erased field %q is missing; want it null", k)
				}
			}
			if !reflect.DeepEqual(got[k], wantV) {
				rt.Fatalf("erased %q = %v, want %v", k, got[k], wantV)
			}
		}
		if len(got) != len(want) {
			rt.Fatalf("erased data has %d fields, want %d: %s", len(got), len(want), erased)
		}
		// Another event's ID does not open it.
		if _, err := openData(uuid.New(), stored, sm, ms, at, aead); err == nil {
			rt.Fatal("ciphertext opened under another event's id")
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestOneOpenerOpensEachEventToItsOwnData: an opener keeps its buffers
// from one event to the next (Keyring.Open uses one for a page); whatever
// the sizes and the order of the events, erased ones among them, each opens
// to its own values, and an event opened before is not changed by a later one.
func TestOneOpenerOpensEachEventToItsOwnData(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		key := make([]byte, KeySize)
		_, _ = rand.Read(key)
		aead, err := newAEAD(key)
		if err != nil {
			rt.Fatal(err)
		}
		type opened struct {
			got  []byte
			want string
		}
		var o opener
		var done []opened
		for i := range rapid.IntRange(1, 12).Draw(rt, "events") {
			id := uuid.New()
			name := rapid.StringN(0, 40, -1).Draw(rt, "name")
			data, err := json.Marshal(map[string]any{"learner": "L", "name": name, "n": i})
			if err != nil {
				rt.Fatal(err)
			}
			subject := rapid.StringN(1, 30, -1).Draw(rt, "subject")
			stored, sealed, err := sealData(id, event.PersonalData{DataSubject: subject, Fields: []string{"name"}}, data, aead)
			if err != nil || !sealed {
				rt.Fatalf("seal: %v %v", sealed, err)
			}
			sm, ms, at, ok, err := sealedOf(stored)
			if err != nil || !ok {
				rt.Fatalf("sealedOf: %v %v", ok, err)
			}
			with, want := aead, string(data)
			if rapid.Bool().Draw(rt, "erased") {
				erased, err := json.Marshal(map[string]any{"learner": "L", "name": nil, "n": i})
				if err != nil {
					rt.Fatal(err)
				}
				with, want = nil, string(erased)
			}
			got, err := o.open(id, stored, sm, ms, at, with)
			if err != nil {
				rt.Fatal(err)
			}
			done = append(done, opened{got, want})
			for j, d := range done {
				if string(d.got) != d.want {
					rt.Fatalf("event %d of %d opened to %s, want %s", j, len(done), d.got, d.want)
				}
			}
		}
	})
}

func TestMembersFindsTopLevelSpans(t *testing.T) {
	data := []byte(` { "a" : 1 , "b":{"x":[1,"}"]},"c\"d":"e\\"  ,"n":-1.5e3}`)
	ms, err := members(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, string(m.key)+"="+string(data[m.start:m.end]))
	}
	want := []string{"a=1", `b={"x":[1,"}"]}`, `c"d="e\\"`, "n=-1.5e3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("members = %q, want %q", got, want)
	}
}

func BenchmarkSeal(b *testing.B) {
	key := make([]byte, KeySize)
	aead, _ := newAEAD(key)
	data := []byte(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-1234567890ab","learner_id":"0190d1e2-7c4a-7b3e-8f00-1234567890ac","score_raw":87}`)
	p := event.PersonalData{DataSubject: "0190d1e2-7c4a-7b3e-8f00-1234567890ac", Fields: []string{"score_raw"}}
	id := uuid.New()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := sealData(id, p, data, aead); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	key := make([]byte, KeySize)
	aead, _ := newAEAD(key)
	data := []byte(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-1234567890ab","learner_id":"0190d1e2-7c4a-7b3e-8f00-1234567890ac","score_raw":87}`)
	p := event.PersonalData{DataSubject: "0190d1e2-7c4a-7b3e-8f00-1234567890ac", Fields: []string{"score_raw"}}
	id := uuid.New()
	stored, _, err := sealData(id, p, data, aead)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sm, ms, at, _, err := sealedOf(stored)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := openData(id, stored, sm, ms, at, aead); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzStoredData feeds arbitrary bytes where stored data goes: finding the
// members and the sealed member, and opening it, never panic; for a valid
// JSON object the members are its keys, in order.
func FuzzStoredData(f *testing.F) {
	for _, seed := range []string{
		`{"a":1}`, `{"a":{"b":[1,2,{"c":"}"}]},"d":"\\"","e":null}`, `{}`, `[]`, `{"a"`, `{"a":}`, `{"\u00e9":1,"a\\"b":2}`,
		`{"x":null,"eventbus:sealed":{"v":1,"subject":"s","fields":["x"],"ct":"AAAA"}}`,
		`{"eventbus:sealed":{"v":1,"subject":"s","fields":["x"],"erased":true},"x":null}`,
		` { "a" : 1 , "eventbus:sealed" : {"v":2} } `, "{\"a\":\"\\", `{"a":1,}`,
	} {
		f.Add([]byte(seed))
	}
	key := make([]byte, KeySize)
	aead, err := newAEAD(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := members(data)
		var obj map[string]json.RawMessage
		// Stored data is valid UTF-8 (the bus checks it); the decoder
		// would merge keys whose invalid bytes it replaces.
		if utf8.Valid(data) && json.Valid(data) && json.Unmarshal(data, &obj) == nil && obj != nil {
			if err != nil {
				t.Fatalf("members of a valid object: %v", err)
			}
			seen := map[string]bool{}
			for _, m := range ms {
				seen[string(m.key)] = true
				if !json.Valid(data[m.start:m.end]) {
					t.Fatalf("member %q spans %q, not a JSON value", m.key, data[m.start:m.end])
				}
			}
			if len(seen) != len(obj) {
				t.Fatalf("members found %d keys, the decoder %d", len(seen), len(obj))
			}
		}
		sm, ms, at, ok, err := sealedOf(data)
		if err != nil || !ok {
			return
		}
		for _, a := range []cipher.AEAD{nil, aead} {
			out, err := openData(uuid.Nil, data, sm, ms, at, a)
			if err == nil && json.Valid(data) && !json.Valid(out) {
				t.Fatalf("opened %q into invalid JSON %q", data, out)
			}
		}
	})
}

// checkDecodeSealed fails when decodeSealed and json.Unmarshal disagree
// about raw: both fail, or both give the same member.
func checkDecodeSealed(t interface{ Fatalf(string, ...any) }, raw []byte) {
	var want sealedMember
	wantErr := json.Unmarshal(raw, &want)
	got, err := decodeSealed(raw)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeSealed(%q): error %v, json.Unmarshal: %v", raw, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeSealed(%q) = %#v, json.Unmarshal gives %#v", raw, got, want)
	}
}

// TestDecodeSealedIsUnmarshal: the sealed member as the bus writes it, for
// any subject, fields and ciphertext, decodes as json.Unmarshal decodes it,
// and by the direct path when it holds no character JSON must escape.
func TestDecodeSealedIsUnmarshal(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		sm := sealedMember{
			V:       rapid.IntRange(0, 3).Draw(rt, "v"),
			Subject: rapid.String().Draw(rt, "subject"),
			Fields:  rapid.SliceOfN(rapid.String(), 0, 4).Draw(rt, "fields"),
			CT:      rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(rt, "ct"),
			Erased:  rapid.Bool().Draw(rt, "erased"),
		}
		raw, err := json.Marshal(sm)
		if err != nil {
			rt.Fatal(err)
		}
		checkDecodeSealed(rt, raw)
		plain := func(s string) bool {
			return json.Valid([]byte(`"`+s+`"`)) && !bytes.ContainsAny([]byte(s), "\\\"<>&\u2028\u2029")
		}
		simple := plain(sm.Subject)
		for _, f := range sm.Fields {
			simple = simple && plain(f)
		}
		if _, ok := decodeSealedFast(raw); simple && !ok {
			rt.Fatalf("the member %s, as the bus writes it, took the slow path", raw)
		}
	})
}

// FuzzDecodeSealed: whatever the stored bytes, decodeSealed agrees with
// json.Unmarshal.
//
//	go test ./erasure -run '^$' -fuzz FuzzDecodeSealed -fuzztime 30s
func FuzzDecodeSealed(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"subject":"L","fields":["score_raw"],"ct":"AAAA"}`,
		`{"v":1,"subject":"L","fields":[],"erased":true}`,
		`{"ct":""}`, `{"ct":"A"}`, `{"ct":"AAA="}`, `{"ct":"AA=A"}`, `{"ct":"AA\nA"}`, `{"ct":null}`, `{"ct":"AAAA","ct":"BBBB"}`,
		`{ "v" : 1 , "subject" : "L" , "fields" : [ "a" , "b" ] }`,
		`{"V":1,"Subject":"L"}`, `{"v":01}`, `{"v":1.0}`, `{"v":-1}`, `{"v":1e2}`,
		`{"subject":"a\u00e9\"b"}`, `{"subject":null,"fields":null}`, `{"fields":[1]}`,
		`{}`, `[]`, `{"v":1}x`, `{"v":1,}`, `{"erased":"true"}`, `{"v":1,"v":2}`,
		"{\"subject\":\"\xff\"}", "{\"subject\":\"a\tb\"}", `{"other":{"x":[1,2]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkDecodeSealed(t, raw) })
}
