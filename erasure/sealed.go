package erasure

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// How an event's personal fields are stored. The data keeps its shape:
// each personal field stays where it was, with the value null, and one
// member is added at the end of the top-level object, under the reserved
// name event.SealedKey ("eventbus:sealed"):
//
//	{"quiz_id":"…","learner_id":"L","score_raw":null,
//	 "eventbus:sealed":{"v":1,"subject":"L","fields":["score_raw"],"ct":"…"}}
//
// ct is standard base64 of a 12-byte nonce and the AES-256-GCM ciphertext
// of the JSON object of the personal fields' values ({"score_raw":87}),
// under the data subject's key, with the associated data
// "eventbus:sealed:v1", a zero byte, the event ID's 16 bytes and the
// subject. An event whose subject was already erased when it was appended
// has "erased":true and no ct. A SQL reader of event_store therefore sees
// null where the personal data was; readers through the bus get the values
// back, or null with the event marked erased.

// sealedFormat is the version of the sealed member's format.
const sealedFormat = 1

// sealedMember is the value of the event.SealedKey member.
type sealedMember struct {
	V       int      `json:"v"`
	Subject string   `json:"subject"`
	Fields  []string `json:"fields"`
	// CT is the nonce and the ciphertext; encoding/json writes and reads
	// it as standard base64, which is the stored form.
	CT     []byte `json:"ct,omitempty"`
	Erased bool   `json:"erased,omitempty"`
}

// ErrSealed reports stored data whose sealed member this build cannot read.
var ErrSealed = errors.New("sealed personal data unreadable")

// member is one top-level member of a JSON object: its key, and where its
// key (the opening quote) and its value lie in the data. The key is a
// slice of the data itself unless it has escapes: every read opens every
// sealed event, and a string per key would be most of its allocations.
type member struct {
	key                          []byte
	keyStart, keyEnd, start, end int
}

// is reports whether m's key is name.
func (m member) is(name string) bool { return string(m.key) == name }

// members lists the top-level members of the JSON object data, which must
// be valid JSON (the bus checked it when it was appended).
func members(data []byte) ([]member, error) {
	return appendMembers(make([]member, 0, 8), data)
}

// appendMembers is members appending to out, so that a caller can list
// them into an array of its own.
func appendMembers(out []member, data []byte) ([]member, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, errors.New("data is not a JSON object")
	}
	i++
	first := len(out)
	for {
		i = skipSpace(data, i)
		if i >= len(data) {
			return nil, errors.New("data ends inside its object")
		}
		if data[i] == '}' {
			return out, nil
		}
		if len(out) > first {
			if data[i] != ',' {
				return nil, fmt.Errorf("data: expected ',' or '}' at byte %d", i)
			}
			i = skipSpace(data, i+1)
		}
		if i >= len(data) || data[i] != '"' {
			return nil, fmt.Errorf("data: expected a key at byte %d", i)
		}
		keyStart := i
		keyEnd, err := skipString(data, i)
		if err != nil {
			return nil, err
		}
		key, err := unquoteKey(data[keyStart:keyEnd])
		if err != nil {
			return nil, err
		}
		i = skipSpace(data, keyEnd)
		if i >= len(data) || data[i] != ':' {
			return nil, fmt.Errorf("data: expected ':' at byte %d", i)
		}
		start := skipSpace(data, i+1)
		end, err := skipValue(data, start)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key: key, keyStart: keyStart, keyEnd: keyEnd, start: start, end: end})
		i = end
	}
}

func unquoteKey(quoted []byte) ([]byte, error) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return quoted[1 : len(quoted)-1], nil
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return nil, fmt.Errorf("data: bad key: %w", err)
	}
	return []byte(s), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just after the string starting at i.
func skipString(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("data: unterminated string")
}

// skipValue returns the index just after the JSON value starting at i.
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errors.New("data: value expected")
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := skipString(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("data: unterminated object or array")
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, nil
		}
		j++
	}
	return j, nil
}

// appendSealAAD appends the associated data of an event's ciphertext to
// dst: it binds the ciphertext to the event and the subject, so that it
// cannot be copied to another event.
func appendSealAAD(dst []byte, id uuid.UUID, subject string) []byte {
	dst = append(dst, "eventbus:sealed:v1\x00"...)
	dst = append(dst, id[:]...)
	return append(dst, subject...)
}

// sealData returns data with the fields of p replaced by null and the
// sealed member added, encrypted with aead, or marked erased when aead is
// nil. sealed is false when no field of p holds a value (absent or null):
// data is then returned as it is.
func sealData(id uuid.UUID, p event.PersonalData, data []byte, aead cipher.AEAD) (out []byte, sealed bool, err error) {
	ms, err := members(data)
	if err != nil {
		return nil, false, err
	}
	wanted := make(map[string]bool, len(p.Fields))
	for _, f := range p.Fields {
		wanted[f] = true
	}
	plain := []byte{'{'}
	var fields []string
	var spans []member
	for _, m := range ms {
		if m.is(event.SealedKey) {
			return nil, false, &event.PersonalError{Field: "data." + event.SealedKey, Reason: "is a reserved name; the bus stores encrypted personal fields under it"}
		}
		if !wanted[string(m.key)] || string(data[m.start:m.end]) == "null" {
			continue
		}
		wanted[string(m.key)] = false // a duplicate key was refused on the way in; be safe
		if len(fields) > 0 {
			plain = append(plain, ',')
		}
		plain = append(plain, data[m.keyStart:m.keyEnd]...) // the key as the producer wrote it
		plain = append(plain, ':')
		plain = append(plain, data[m.start:m.end]...)
		fields = append(fields, string(m.key))
		spans = append(spans, m)
	}
	if len(fields) == 0 {
		return data, false, nil
	}
	plain = append(plain, '}')
	sm := sealedMember{V: sealedFormat, Subject: p.DataSubject, Fields: fields}
	if aead == nil {
		sm.Erased = true
	} else {
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, false, fmt.Errorf("erasure: nonce: %w", err)
		}
		sm.CT = aead.Seal(nonce, nonce, plain, appendSealAAD(nil, id, p.DataSubject))
	}
	tail, err := json.Marshal(sm)
	if err != nil {
		return nil, false, fmt.Errorf("erasure: encode the sealed member: %w", err)
	}
	out = make([]byte, 0, len(data)+len(tail)+32)
	prev := 0
	for _, m := range spans {
		out = append(out, data[prev:m.start]...)
		out = append(out, "null"...)
		prev = m.end
	}
	closing := bytes.LastIndexByte(data, '}')
	out = append(out, data[prev:closing]...)
	out = append(out, `,"`+event.SealedKey+`":`...)
	out = append(out, tail...)
	out = append(out, data[closing:]...)
	return out, true, nil
}

// sealedOf finds the sealed member of stored data. ok is false when data
// has none: it holds no personal data, and reads as it is.
func sealedOf(data []byte) (sm sealedMember, ms []member, at int, ok bool, err error) {
	if !bytes.Contains(data, []byte(`"`+event.SealedKey+`"`)) {
		return sm, nil, 0, false, nil
	}
	ms, err = members(data)
	if err != nil {
		return sm, nil, 0, false, err
	}
	for i, m := range ms {
		if !m.is(event.SealedKey) {
			continue
		}
		if sm, err = decodeSealed(data[m.start:m.end]); err != nil {
			return sm, nil, 0, false, fmt.Errorf("%w: %v", ErrSealed, err)
		}
		if sm.V != sealedFormat {
			return sm, nil, 0, false, fmt.Errorf("%w: format %d, this build reads %d", ErrSealed, sm.V, sealedFormat)
		}
		return sm, ms, i, true, nil
	}
	return sm, nil, 0, false, nil
}

// decodeSealed decodes the value of the sealed member as json.Unmarshal
// would, without its reflection on every read: the member as the bus
// writes it (known keys, plain strings, a small integer) is read directly,
// and anything else goes to json.Unmarshal, so that the result never
// differs from it (FuzzDecodeSealed checks).
func decodeSealed(raw []byte) (sealedMember, error) {
	if sm, ok := decodeSealedFast(raw); ok {
		return sm, nil
	}
	var sm sealedMember
	err := json.Unmarshal(raw, &sm)
	return sm, err
}

// decodeSealedFast is decodeSealed's direct path; ok is false when raw is
// not in the form the bus writes.
func decodeSealedFast(raw []byte) (sm sealedMember, ok bool) {
	var room [8]member // the bus writes at most five
	ms, err := appendMembers(room[:0], raw)
	if err != nil || len(ms) == 0 || raw[len(raw)-1] != '}' || skipSpace(raw, ms[len(ms)-1].end) != len(raw)-1 {
		return sm, false
	}
	for _, m := range ms {
		v := raw[m.start:m.end]
		switch string(m.key) {
		case "v":
			n, ok := smallInt(v)
			if !ok {
				return sm, false
			}
			sm.V = n
		case "subject":
			if sm.Subject, ok = plainString(v); !ok {
				return sm, false
			}
		case "ct":
			// As encoding/json decodes base64 into a []byte.
			b64, ok := plainBytes(v)
			if !ok {
				return sm, false
			}
			ct := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
			n, err := base64.StdEncoding.Decode(ct, b64)
			if err != nil {
				return sm, false
			}
			sm.CT = ct[:n]
		case "erased":
			switch string(v) {
			case "true":
				sm.Erased = true
			case "false":
				sm.Erased = false
			default:
				return sm, false
			}
		case "fields":
			if sm.Fields, ok = plainStrings(v); !ok {
				return sm, false
			}
		default:
			// json.Unmarshal matches keys case-insensitively and skips
			// unknown ones: leave both to it.
			return sm, false
		}
	}
	return sm, true
}

// smallInt reads a JSON integer of at most 9 digits without a leading zero.
func smallInt(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 9 || (v[0] == '0' && len(v) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// plainString reads a JSON string without escapes, control characters or
// invalid UTF-8 (which json.Unmarshal would replace).
func plainString(v []byte) (string, bool) {
	body, ok := plainBytes(v)
	return string(body), ok
}

// plainBytes is plainString's content, as a slice of v.
func plainBytes(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	body := v[1 : len(v)-1]
	for _, c := range body {
		if c < 0x20 || c == '\\' || c == '"' {
			return nil, false
		}
	}
	if !utf8.Valid(body) {
		return nil, false
	}
	return body, true
}

// plainStrings reads a JSON array of plain strings (see plainString).
func plainStrings(v []byte) ([]string, bool) {
	if len(v) < 2 || v[0] != '[' {
		return nil, false
	}
	out := []string{}
	i := skipSpace(v, 1)
	if i < len(v) && v[i] == ']' {
		return out, i == len(v)-1
	}
	for i < len(v) {
		end, err := skipString(v, i)
		if err != nil || v[i] != '"' {
			return nil, false
		}
		s, ok := plainString(v[i:end])
		if !ok {
			return nil, false
		}
		out = append(out, s)
		i = skipSpace(v, end)
		if i >= len(v) {
			return nil, false
		}
		switch v[i] {
		case ']':
			return out, i == len(v)-1
		case ',':
			i = skipSpace(v, i+1)
		default:
			return nil, false
		}
	}
	return nil, false
}

// openData returns stored data as readers get it: the sealed member
// removed, and the personal fields decrypted with aead, or left null when
// aead is nil (the subject is erased).
func openData(id uuid.UUID, data []byte, sm sealedMember, ms []member, at int, aead cipher.AEAD) ([]byte, error) {
	var o opener
	return o.open(id, data, sm, ms, at, aead)
}

// opener is openData with buffers kept from one event to the next: a page
// of sealed events allocates only the data it returns.
type opener struct{ aad, plain []byte }

func (o *opener) open(id uuid.UUID, data []byte, sm sealedMember, ms []member, at int, aead cipher.AEAD) ([]byte, error) {
	var (
		room  [8]member
		pms   []member // the personal fields' values, in o.plain
		plain []byte
	)
	if aead != nil && !sm.Erased {
		n := aead.NonceSize()
		if len(sm.CT) < n+aead.Overhead() {
			return nil, fmt.Errorf("%w: event %s: bad ciphertext", ErrSealed, id)
		}
		o.aad = appendSealAAD(o.aad[:0], id, sm.Subject)
		var err error
		plain, err = aead.Open(o.plain[:0], sm.CT[:n], sm.CT[n:], o.aad)
		if err != nil {
			return nil, fmt.Errorf("%w: event %s: %v", ErrSealed, id, err)
		}
		o.plain = plain
		if pms, err = appendMembers(room[:0], plain); err != nil {
			return nil, fmt.Errorf("%w: event %s: %v", ErrSealed, id, err)
		}
	}
	// The sealed member goes with the comma before it (or, first in its
	// object, the one after it).
	cut := ms[at]
	cutStart, cutEnd := cut.keyStart, cut.end
	if at > 0 {
		cutStart = ms[at-1].end
	} else if at+1 < len(ms) {
		cutEnd = ms[at+1].keyStart
	}
	out := make([]byte, 0, len(data))
	prev := 0
	for i, m := range ms {
		if i == at {
			out = append(out, data[prev:cutStart]...)
			prev = cutEnd
			continue
		}
		// A handful of fields: a scan costs less than a map. The last
		// of equal keys counts, as it would in encoding/json.
		j := len(pms) - 1
		for j >= 0 && !bytes.Equal(pms[j].key, m.key) {
			j--
		}
		if j < 0 {
			continue
		}
		out = append(out, data[prev:m.start]...)
		out = append(out, plain[pms[j].start:pms[j].end]...)
		prev = m.end
	}
	return append(out, data[prev:]...), nil
}
