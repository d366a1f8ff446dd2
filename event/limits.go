package event

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The input limits (DESIGN "Input limits", G7 and G9). Every envelope the
// bus accepts must be one that the broker and the CloudEvents SDKs accept
// too: an event that is stored and then cannot be published stops nothing
// less than the relay. The library (Dispatch, Append and their Tx forms, the
// stores' CheckDrafts) and the HTTP API check these same functions.

// MaxShortString is the longest AMQP short string, in bytes. The type
// becomes the routing key and the AMQP type, the source the AMQP app_id.
const MaxShortString = 255

// MaxSubjectLen is the longest stream name (subject), in bytes.
const MaxSubjectLen = 512

// MaxDataDepth is how deeply event data may nest arrays and objects. The
// envelope adds a level on the way to consumers, and JSON decoders stop at
// some depth (Go's at 10,000, Jackson's at 1,000 by default): deeper data
// would be stored, then dead-lettered as malformed by every consumer.
const MaxDataDepth = 512

// The rules an input can break. A *FieldError wraps one of them as well as
// ErrInvalid, so callers can test either with errors.Is.
var (
	ErrEmpty           = errors.New("empty")
	ErrTooLong         = errors.New("too long")
	ErrBadCharacter    = errors.New("character not allowed")
	ErrNotURIReference = errors.New("not a URI-reference")
	ErrOutOfRange      = errors.New("out of range")
	ErrNotJSON         = errors.New("not valid JSON")
	ErrNotUTF8         = errors.New("not valid UTF-8")
	ErrLoneSurrogate   = errors.New("lone surrogate escape")
	ErrDuplicateKey    = errors.New("duplicate object key")
	ErrTooDeep         = errors.New("nested too deeply")
)

// FieldError says which field of an event breaks an input limit, and how.
// It is the typed error of the input limits: the HTTP API answers it with a
// 400 that names Field. It wraps ErrInvalid and Rule.
type FieldError struct {
	// Field names the field as the POST /v1/events body does: "type",
	// "source", "subject", "occurred_at", or a place in the data such as
	// "data", "data.answers[2].text".
	Field string
	// Reason says what is wrong, to be read after the field's name.
	Reason string
	// Rule is the rule broken, one of the Err* rules above.
	Rule error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "invalid event: " + e.Reason
	}
	return "invalid event: " + e.Field + " " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) and errors.Is(err, e.Rule) hold.
func (e *FieldError) Unwrap() []error {
	if e.Rule == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Rule}
}

func fieldError(field string, rule error, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// CheckTypeName enforces the shape of event type names: 1 to 255 bytes,
// words of ASCII letters, digits, '_' or '-', joined by dots. So a type
// never holds a space or a control character, and it fits the AMQP routing
// key and type property (short strings). Dots matter: topic patterns match
// on the type's dot-separated words, so '*' and '#' cannot appear in it.
// Errors are *FieldError for field "type".
func CheckTypeName(name string) error {
	if name == "" {
		return fieldError("type", ErrEmpty, `is required, for example "quiz.submitted"`)
	}
	if len(name) > MaxShortString {
		return fieldError("type", ErrTooLong, "is %d bytes long; the limit is %d (the type is the AMQP routing key)", len(name), MaxShortString)
	}
	wordStart := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if i == wordStart {
				return fieldError("type", ErrBadCharacter, "%s has an empty word: words of letters, digits, '_' or '-', joined by single dots", Quote(name))
			}
			wordStart = i + 1
			continue
		}
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fieldError("type", ErrBadCharacter, "%s may hold only letters, digits, '_', '-' and '.' (no spaces or control characters)", Quote(name))
		}
	}
	return nil
}

// CheckSource checks an event's source: a non-empty URI-reference (RFC
// 3986) of at most 255 bytes, since it becomes the AMQP app_id, a short
// string. It must also survive the URL parser of the CloudEvents Go SDK
// (net/url), which is stricter than RFC 3986 in a few corners (%-escapes of
// ASCII in a host, IPv6 literals) and drops a lone "#". Errors are
// *FieldError for field "source".
func CheckSource(source string) error {
	switch {
	case source == "":
		return fieldError("source", ErrEmpty, `must not be empty; name the producer, for example "/quiz-service" or "urn:edupulse:quiz"`)
	case len(source) > MaxShortString:
		return fieldError("source", ErrTooLong, "is %d bytes long; the limit is %d (the source is the AMQP app_id, a short string)", len(source), MaxShortString)
	}
	why, authority := uriReferenceProblem(source)
	if why != "" {
		return fieldError("source", ErrNotURIReference, "%s is not a URI-reference (RFC 3986): %s", Quote(source), why)
	}
	if source == "#" {
		return fieldError("source", ErrNotURIReference, "%s names no resource; CloudEvents needs a non-empty source", Quote(source))
	}
	if !authority {
		// Without an authority net/url takes every URI-reference, and the
		// only one it reads back empty is "#": no need to ask it.
		return nil
	}
	u, err := url.Parse(source)
	if err != nil {
		return fieldError("source", ErrNotURIReference, "%s is not a URI-reference that URL parsers accept: %v", Quote(source), errors.Unwrap(err))
	}
	if strings.TrimSpace(u.String()) == "" {
		return fieldError("source", ErrNotURIReference, "%s names no resource; CloudEvents needs a non-empty source", Quote(source))
	}
	return nil
}

// CheckSubject checks an event's subject (its stream): at most 512 bytes of
// valid UTF-8, without NUL (which PostgreSQL text cannot hold), and, when
// present, not only white space (CloudEvents requires a present subject to
// be non-empty, and its SDKs trim it). Errors are *FieldError for field
// "subject".
func CheckSubject(subject string) error {
	switch {
	case subject == "":
		return nil
	case len(subject) > MaxSubjectLen:
		return fieldError("subject", ErrTooLong, "is %d bytes long; the limit is %d", len(subject), MaxSubjectLen)
	case !utf8.ValidString(subject):
		return fieldError("subject", ErrNotUTF8, "is not valid UTF-8")
	case strings.IndexByte(subject, 0) >= 0:
		return fieldError("subject", ErrBadCharacter, "must not contain NUL characters")
	case strings.TrimFunc(subject, unicode.IsSpace) == "":
		return fieldError("subject", ErrEmpty, "is only white space; leave it out, or name the stream")
	}
	return nil
}

// CheckDataSchema checks an event's dataschema, when present: a URI (RFC
// 3986, with a scheme, as CloudEvents requires) of at most 255 bytes. The
// bus assigns the URN of a known type's version; an event of a type it
// does not know keeps what its producer sent. Errors are *FieldError for
// field "dataschema".
func CheckDataSchema(s string) error {
	switch {
	case s == "":
		return nil
	case len(s) > MaxShortString:
		return fieldError("dataschema", ErrTooLong, "is %d bytes long; the limit is %d", len(s), MaxShortString)
	}
	if why, _ := uriReferenceProblem(s); why != "" {
		return fieldError("dataschema", ErrNotURIReference, "%s is not a URI (RFC 3986): %s", Quote(s), why)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fieldError("dataschema", ErrNotURIReference, "%s is not an absolute URI (it needs a scheme, such as urn: or https:)", Quote(s))
	}
	return nil
}

// CheckShortText checks a text attribute that travels as an AMQP short
// string or a CloudEvents attribute (a correlation or causation ID given as
// text): at most 255 bytes of valid UTF-8, without control characters.
// Errors are *FieldError for field.
func CheckShortText(field, s string) error {
	if len(s) > MaxShortString {
		return fieldError(field, ErrTooLong, "is %d bytes long; the limit is %d (it is an AMQP short string)", len(s), MaxShortString)
	}
	return checkText(field, s, true)
}

// CheckText checks a free text attribute (trace context): valid UTF-8
// without NUL, which PostgreSQL text cannot hold. Errors are *FieldError for
// field.
func CheckText(field, s string) error { return checkText(field, s, false) }

func checkText(field, s string, noControls bool) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 || noControls && (c < 0x20 || c == 0x7f) {
				return fieldError(field, ErrBadCharacter, "must not contain control characters (byte %d is %#02x)", i, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fieldError(field, ErrNotUTF8, "is not valid UTF-8 (at byte %d)", i)
		}
		if noControls && r >= 0x80 && r <= 0x9f {
			return fieldError(field, ErrBadCharacter, "must not contain control characters (U+%04X at byte %d)", r, i)
		}
		i += size
	}
	return nil
}

// CheckDraft checks a draft against the input limits: its type, source
// (when set: the bus fills an empty one), subject, trace context, time and
// data. It does not check what the bus fills in (ID, correlation); the
// stores' CheckDrafts adds those. Errors are *FieldError.
func CheckDraft(d *Draft) error {
	if err := CheckTypeName(d.Type); err != nil {
		return err
	}
	if d.Source != "" {
		if err := CheckSource(d.Source); err != nil {
			return err
		}
	}
	if err := CheckSubject(d.Subject); err != nil {
		return err
	}
	if err := CheckText("traceparent", d.TraceParent); err != nil {
		return err
	}
	if err := CheckText("tracestate", d.TraceState); err != nil {
		return err
	}
	if err := CheckDataSchema(d.DataSchema); err != nil {
		return err
	}
	// RFC 3339 has four-digit years, and consumers parse the time with it.
	if !d.OccurredAt.IsZero() {
		if y := d.OccurredAt.UTC().Year(); y < 1 || y > 9999 {
			return fieldError("occurred_at", ErrOutOfRange, "is in year %d; RFC 3339 times are in years 1 to 9999", y)
		}
	}
	return CheckData(d.Data)
}

// Quote quotes s for an error message, cut short if it is long: errors echo
// what a client sent, never a megabyte of it.
func Quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", s[:cut])
}

// uriReferenceProblem says why s is not a URI-reference of RFC 3986
// (section 4.1), or returns "" when it is one, and whether it has an
// authority ("//host"). It reads s once, byte by byte.
//
//	URI-reference = URI / relative-ref
//	URI           = scheme ":" hier-part [ "?" query ] [ "#" fragment ]
//	relative-ref  = relative-part [ "?" query ] [ "#" fragment ]
func uriReferenceProblem(s string) (why string, authority bool) {
	rest := s
	// A scheme is letters first, then letters, digits, '+', '-', '.', up to
	// the first ':' that comes before any '/', '?' or '#'. Without one, the
	// first segment of a relative path must not hold a ':' (path-noscheme).
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == ':' {
			if i == 0 {
				return "it starts with ':'", false
			}
			if !isAlpha(rest[0]) {
				return "the part before the first ':' is neither a scheme (a letter, then letters, digits, '+', '-', '.') nor a path segment (put \"./\" before it)", false
			}
			for j := 1; j < i; j++ {
				if !isAlpha(rest[j]) && !isDigit(rest[j]) && rest[j] != '+' && rest[j] != '-' && rest[j] != '.' {
					return "the part before the first ':' is neither a scheme (a letter, then letters, digits, '+', '-', '.') nor a path segment (put \"./\" before it)", false
				}
			}
			rest = rest[i+1:]
			break
		}
		if c == '/' || c == '?' || c == '#' {
			break
		}
	}
	// Fragment and query come last: cut them off and check them.
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		if why := checkChars(rest[i+1:], "/?", "the fragment"); why != "" {
			return why, false
		}
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		if why := checkChars(rest[i+1:], "/?", "the query"); why != "" {
			return why, false
		}
		rest = rest[:i]
	}
	// hier-part / relative-part: "//" authority path-abempty, or a path.
	if strings.HasPrefix(rest, "//") {
		auth := rest[2:]
		path := ""
		if i := strings.IndexByte(auth, '/'); i >= 0 {
			auth, path = auth[:i], auth[i:]
		}
		if why := checkAuthority(auth); why != "" {
			return why, true
		}
		return checkChars(path, "/", "the path"), true
	}
	return checkChars(rest, "/", "the path"), false
}

// checkAuthority checks authority = [ userinfo "@" ] host [ ":" port ].
func checkAuthority(auth string) string {
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		if why := checkChars(auth[:i], ":", "the user information"); why != "" {
			return why
		}
		auth = auth[i+1:]
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return "the IP literal in the host misses its ']'"
		}
		if why := checkIPLiteral(auth[1:end]); why != "" {
			return why
		}
		host, port = "", auth[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "the IP literal in the host is followed by something other than ':' and a port"
			}
			port = port[1:]
		}
	} else if i := strings.LastIndexByte(auth, ':'); i >= 0 {
		host, port = auth[:i], auth[i+1:]
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return "the port is not a number"
		}
	}
	return checkChars(host, "", "the host")
}

// checkIPLiteral checks IP-literal's inside: IPv6address / IPvFuture.
func checkIPLiteral(lit string) string {
	if lit == "" {
		return "the IP literal in the host is empty"
	}
	if lit[0] == 'v' || lit[0] == 'V' {
		// IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
		dot := strings.IndexByte(lit, '.')
		if dot < 2 || dot == len(lit)-1 {
			return "the IP literal in the host is not an IP address"
		}
		for i := 1; i < dot; i++ {
			if !isHex(lit[i]) {
				return "the IP literal in the host is not an IP address"
			}
		}
		for i := dot + 1; i < len(lit); i++ {
			if c := lit[i]; !isUnreserved(c) && !isSubDelim(c) && c != ':' {
				return "the IP literal in the host is not an IP address"
			}
		}
		return ""
	}
	if !validIPv6(lit) {
		return "the IP literal in the host is not an IPv6 address"
	}
	return ""
}

// validIPv6 reports whether s is an IPv6address of RFC 3986, which has no
// zone; net/netip's grammar is the RFC's otherwise, IPv4 tail included.
func validIPv6(s string) bool {
	addr, err := netip.ParseAddr(s)
	return err == nil && addr.Is6() && addr.Zone() == ""
}

// checkChars checks that s holds only pchar (unreserved, %-escapes,
// sub-delims, ':' and '@') and the characters of extra.
func checkChars(s, extra, part string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c) || isSubDelim(c) || c == ':' || c == '@':
			// A host holds neither (they delimit it), user information no '@'.
			if part == "the host" && (c == ':' || c == '@') || part == "the user information" && c == '@' {
				return fmt.Sprintf("%s holds %q", part, c)
			}
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Sprintf("%s holds a '%%' that does not start an escape of two hex digits", part)
			}
			i += 2
		case strings.IndexByte(extra, c) >= 0:
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("%s holds the control character %#02x", part, c)
		case c == ' ':
			return fmt.Sprintf("%s holds a space (escape it as %%20)", part)
		case c >= 0x80:
			return fmt.Sprintf("%s holds a character outside ASCII (escape its UTF-8 bytes as %%XX)", part)
		default:
			return fmt.Sprintf("%s holds %q, which must be escaped", part, c)
		}
	}
	return ""
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isUnreserved(c byte) bool {
	return isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}
