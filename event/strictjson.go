package event

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// CheckData checks event data: one JSON value, present and not null, that
// is strict JSON (see CheckJSON) and nests arrays and objects at most
// MaxDataDepth levels deep. Errors are *FieldError naming the place in the
// data, such as "data.answers[2]".
func CheckData(data []byte) error {
	if len(data) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return fieldError("data", ErrEmpty, "is required: the event's payload, as JSON")
	}
	return checkJSON(data, "data", MaxDataDepth, 0)
}

// CheckJSON checks that b is one strict JSON value: valid JSON (RFC 8259)
// whose strings are valid UTF-8 with no lone surrogate escape such as
// "\ud800" (which decoders would replace with U+FFFD), whose objects hold no
// key twice (decoders disagree on which one wins), and which nests arrays
// and objects at most maxDepth levels deep (0: no limit). It reads b once,
// and allocates nothing for objects of up to 16 keys whose keys have no
// escapes. Errors are *FieldError whose Field is the JSON path of the fault,
// such as "events[1].data.x"; "" is the value as a whole.
func CheckJSON(b []byte, maxDepth int) error {
	return checkJSON(b, "", maxDepth, -1)
}

// checkJSON is CheckJSON with the path starting at root. A depth error
// names only the first depthLevels levels of its path (-1: all), so that it
// names the field rather than a path hundreds of levels long.
func checkJSON(b []byte, root string, maxDepth, depthLevels int) error {
	s := scanners.Get().(*scanner)
	s.b, s.i, s.root, s.maxDepth, s.depthLevels = b, 0, root, maxDepth, depthLevels
	err := s.run()
	// Keep no reference to b, nor stacks grown by one odd input.
	clear(s.frames[:cap(s.frames)])
	clear(s.keys[:cap(s.keys)])
	if cap(s.frames) > 64 || cap(s.keys) > 256 {
		s.frames, s.keys = make([]frame, 0, 8), make([][]byte, 0, 32)
	}
	s.b, s.frames, s.keys = nil, s.frames[:0], s.keys[:0]
	scanners.Put(s)
	return err
}

// scanners keeps scanners and their stacks between checks: a check then
// allocates nothing for the common event.
var scanners = sync.Pool{New: func() any {
	return &scanner{frames: make([]frame, 0, 8), keys: make([][]byte, 0, 32)}
}}

// smallObject is how many keys an object may have before duplicates are
// found with a map rather than by comparing with each key.
const smallObject = 16

type scanner struct {
	b           []byte
	i           int
	root        string
	maxDepth    int
	depthLevels int
	frames      []frame
	keys        [][]byte // the keys of the open objects, innermost last
}

// frame is an open array or object.
type frame struct {
	object   bool
	keysFrom int                 // where this object's keys start in scanner.keys
	index    int                 // the current element of an array
	set      map[string]struct{} // the keys of a large object
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) skipSpace() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

// run reads one value and then the end of the input.
func (s *scanner) run() error {
	for {
		// A value starts here.
		s.skipSpace()
		if s.i >= len(s.b) {
			return s.syntax("ends before a value")
		}
		switch c := s.b[s.i]; {
		case c == '{' || c == '[':
			if s.maxDepth > 0 && len(s.frames) >= s.maxDepth {
				return &FieldError{Field: s.path(s.depthLevels, ""), Rule: ErrTooDeep,
					Reason: fmt.Sprintf("nests arrays and objects more than %d levels deep", s.maxDepth)}
			}
			s.frames = append(s.frames, frame{object: c == '{', keysFrom: len(s.keys)})
			s.i++
			s.skipSpace()
			if c == '{' {
				if s.i < len(s.b) && s.b[s.i] == '}' {
					s.i++
					s.pop()
					break
				}
				if err := s.key(); err != nil {
					return err
				}
				continue
			}
			if s.i < len(s.b) && s.b[s.i] == ']' {
				s.i++
				s.pop()
				break
			}
			continue
		case c == '"':
			end, _, err := s.str(s.i)
			if err != nil {
				return err
			}
			s.i = end
		case c == '-' || c >= '0' && c <= '9':
			if err := s.number(); err != nil {
				return err
			}
		case c == 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			return s.syntax(fmt.Sprintf("has %s where a value should start", describeByte(s.b, s.i)))
		}
		// A value ended: what comes next depends on where it was.
		for {
			s.skipSpace()
			if len(s.frames) == 0 {
				if s.i < len(s.b) {
					return s.syntax(fmt.Sprintf("has %s after its value", describeByte(s.b, s.i)))
				}
				return nil
			}
			if s.i >= len(s.b) {
				return s.syntax("ends before its arrays and objects close")
			}
			top := &s.frames[len(s.frames)-1]
			c := s.b[s.i]
			s.i++
			if top.object {
				switch c {
				case ',':
					s.skipSpace()
					if err := s.key(); err != nil {
						return err
					}
				case '}':
					s.pop()
					continue
				default:
					s.i--
					return s.syntax(fmt.Sprintf("has %s where ',' or '}' should be", describeByte(s.b, s.i)))
				}
			} else {
				switch c {
				case ',':
					top.index++
				case ']':
					s.pop()
					continue
				default:
					s.i--
					return s.syntax(fmt.Sprintf("has %s where ',' or ']' should be", describeByte(s.b, s.i)))
				}
			}
			break // another value follows
		}
	}
}

// key reads an object key and the ':' after it, and records the key,
// refusing one the object already has.
func (s *scanner) key() error {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		if s.i >= len(s.b) {
			return s.syntax("ends where an object key should be")
		}
		return s.syntax(fmt.Sprintf("has %s where an object key should be", describeByte(s.b, s.i)))
	}
	start := s.i
	end, escaped, err := s.str(start)
	if err != nil {
		return err
	}
	key := s.b[start+1 : end-1]
	if escaped {
		key = unescape(key)
	}
	s.i = end
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		if s.i >= len(s.b) {
			return s.syntax("ends after an object key")
		}
		return s.syntax(fmt.Sprintf("has %s where ':' should be", describeByte(s.b, s.i)))
	}
	s.i++
	top := &s.frames[len(s.frames)-1]
	if s.seen(top, key) {
		return &FieldError{Field: s.path(len(s.frames)-1, string(key)), Rule: ErrDuplicateKey,
			Reason: "appears twice in the same object; an object must not hold a key twice"}
	}
	s.keys = append(s.keys, key)
	return nil
}

// seen reports whether the object top already holds key.
func (s *scanner) seen(top *frame, key []byte) bool {
	keys := s.keys[top.keysFrom:]
	if top.set == nil && len(keys) < smallObject {
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return true
			}
		}
		return false
	}
	if top.set == nil {
		top.set = make(map[string]struct{}, 4*smallObject)
		for _, k := range keys {
			top.set[string(k)] = struct{}{}
		}
	}
	if _, ok := top.set[string(key)]; ok {
		return true
	}
	top.set[string(key)] = struct{}{}
	return false
}

func (s *scanner) pop() {
	top := s.frames[len(s.frames)-1]
	s.keys = s.keys[:top.keysFrom]
	s.frames = s.frames[:len(s.frames)-1]
}

// str checks the string that starts with the quote at b[start], and returns
// the index after its closing quote and whether it holds escapes.
func (s *scanner) str(start int) (end int, escaped bool, err error) {
	b := s.b
	i := start + 1
	for {
		// Plain ASCII is most of any string: skip it fast.
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			s.i = start
			return 0, false, s.syntax("ends inside a string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				s.i = start
				return 0, false, s.syntax("ends inside a string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					return 0, false, s.stringError(start, ErrNotJSON, fmt.Sprintf("holds a bad \\u escape at byte %d", i))
				}
				i += 6
				switch {
				case r >= 0xd800 && r < 0xdc00:
					// A high surrogate must be followed by a low one.
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						if lo, ok := hex4(b, i+2); ok && lo >= 0xdc00 && lo < 0xe000 {
							i += 6
							continue
						}
					}
					return 0, false, s.stringError(start, ErrLoneSurrogate,
						fmt.Sprintf(`holds the lone surrogate escape \u%04x at byte %d; encode the character itself, or a high and a low surrogate together`, r, i-6))
				case r >= 0xdc00 && r < 0xe000:
					return 0, false, s.stringError(start, ErrLoneSurrogate,
						fmt.Sprintf(`holds the lone surrogate escape \u%04x at byte %d; encode the character itself, or a high and a low surrogate together`, r, i-6))
				}
			default:
				return 0, false, s.stringError(start, ErrNotJSON, fmt.Sprintf("holds the unknown escape \\%c at byte %d", b[i+1], i))
			}
		case c < 0x20:
			return 0, false, s.stringError(start, ErrNotJSON, fmt.Sprintf("holds the control character %#02x at byte %d unescaped", c, i))
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, s.stringError(start, ErrNotUTF8, fmt.Sprintf("is not valid UTF-8 (at byte %d)", i))
			}
			i += size
		}
	}
}

// stringError is an error about the string that starts at start: a value,
// or a key (then the path names the object).
func (s *scanner) stringError(start int, rule error, reason string) error {
	field := s.path(-1, "")
	if s.isKey(start) {
		field = s.path(len(s.frames)-1, "")
		reason = "has a key that " + reason
	}
	return &FieldError{Field: field, Rule: rule, Reason: reason}
}

// isKey reports whether the string at start is an object key: it is, when
// the innermost frame is an object and the last thing before it is '{' or
// ','.
func (s *scanner) isKey(start int) bool {
	if len(s.frames) == 0 || !s.frames[len(s.frames)-1].object {
		return false
	}
	j := start - 1
	for j >= 0 && isSpace(s.b[j]) {
		j--
	}
	return j >= 0 && (s.b[j] == '{' || s.b[j] == ',')
}

func (s *scanner) number() error {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	digits := func() bool {
		from := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > from
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		s.i = i
		return s.syntax("has a number without digits")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			s.i = i
			return s.syntax("has a number without digits after its '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			s.i = i
			return s.syntax("has a number without digits in its exponent")
		}
	}
	s.i = i
	return nil
}

func (s *scanner) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.syntax(fmt.Sprintf("has %s where a value should start", describeByte(s.b, s.i)))
	}
	s.i += len(word)
	return nil
}

func (s *scanner) syntax(reason string) error {
	return &FieldError{Field: s.path(-1, ""), Rule: ErrNotJSON, Reason: "is not valid JSON: " + reason + " (at byte " + strconv.Itoa(s.i) + ")"}
}

// path renders the JSON path of the current place: root, then the key or
// index of each of the first levels open frames (-1: all), then key. It
// runs only for an error.
func (s *scanner) path(levels int, key string) string {
	const maxPath = 200
	if levels < 0 || levels > len(s.frames) {
		levels = len(s.frames)
	}
	var sb strings.Builder
	sb.WriteString(s.root)
	addKey := func(k string) {
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(clipKey(k))
	}
	for j := 0; j < levels; j++ {
		if sb.Len() > maxPath {
			sb.WriteString("…")
			return sb.String()
		}
		f := &s.frames[j]
		if !f.object {
			sb.WriteByte('[')
			sb.WriteString(strconv.Itoa(f.index))
			sb.WriteByte(']')
			continue
		}
		end := len(s.keys)
		if j+1 < len(s.frames) {
			end = s.frames[j+1].keysFrom
		}
		if end > f.keysFrom {
			addKey(string(s.keys[end-1]))
		}
	}
	if key != "" {
		addKey(key)
	}
	return sb.String()
}

// clipKey cuts a long key short for a path in an error message.
func clipKey(k string) string {
	const limit = 40
	if len(k) <= limit {
		return k
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return k[:cut] + "…"
}

// describeByte names the byte at b[i] for a syntax error.
func describeByte(b []byte, i int) string {
	if i >= len(b) {
		return "the end"
	}
	c := b[i]
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("the byte %#02x", c)
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

// unescape decodes the escapes of a string already checked by str.
func unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			if r >= 0xd800 && r < 0xdc00 {
				lo, _ := hex4(raw, i+8)
				r = (r-0xd800)<<10 | (lo - 0xdc00) + 0x10000
				i += 6
			}
			out = utf8.AppendRune(out, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return out
}
