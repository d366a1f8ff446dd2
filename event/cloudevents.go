package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ContentType is the media type of an envelope on the wire: a CloudEvents 1.0
// event in structured JSON mode.
const ContentType = "application/cloudevents+json"

// DataContentType is the media type of every event's data.
const DataContentType = "application/json"

// CloudEvents extension attributes the bus adds. CloudEvents integers are 32
// bits wide, so the 64-bit position and stream version travel as decimal
// strings.
const (
	// AttrDataSchema is the CloudEvents attribute that names the version
	// of the data (SchemaURN).
	AttrDataSchema    = "dataschema"
	AttrCorrelationID = "correlationid"
	AttrCausationID   = "causationid"
	AttrTraceParent   = "traceparent"
	AttrTraceState    = "tracestate"
	AttrPosition      = "position"
	AttrStreamVersion = "streamversion"
	AttrRecordedTime  = "recordedtime"
	// AttrErased is true on an event whose personal data was erased.
	AttrErased = "erased"
)

// timeLayout is RFC 3339 with a fixed microsecond fraction, so that every
// time on the wire has sub-second precision, even on a whole second.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// ErrMalformed reports bytes that are not a CloudEvents envelope this bus can
// read.
var ErrMalformed = errors.New("malformed event envelope")

// Encode returns e as a CloudEvents 1.0 structured-mode JSON event, with
// its data written verbatim (G6).
func Encode(e Envelope) ([]byte, error) {
	return e.AppendCloudEvent(make([]byte, 0, 384+len(e.Data)))
}

// MarshalJSON encodes e as Encode does. Note that encoding/json compacts
// what a MarshalJSON method returns, and by default escapes <, > and &: when
// the exact bytes of the data matter, use Encode or AppendCloudEvent.
func (e Envelope) MarshalJSON() ([]byte, error) { return Encode(e) }

// AppendCloudEvent appends the CloudEvents JSON encoding of e to dst. The
// data is written verbatim: an event of a type this build does not know
// must leave the bus exactly as it came in.
func (e Envelope) AppendCloudEvent(dst []byte) ([]byte, error) {
	if !json.Valid(e.Data) {
		return dst, fmt.Errorf("%w: event %s: data is not valid JSON", ErrMalformed, e.ID)
	}
	dst = append(dst, `{"specversion":"1.0","id":"`...)
	dst = appendUUID(dst, e.ID)
	dst = append(dst, `","source":`...)
	dst = appendString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	if e.Subject != "" {
		dst = append(dst, `,"subject":`...)
		dst = appendString(dst, e.Subject)
	}
	dst = append(dst, `,"time":"`...)
	dst = e.OccurredAt.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, `","datacontenttype":"`+DataContentType+`"`...)
	if e.DataSchema != "" {
		dst = append(dst, `,"`+AttrDataSchema+`":`...)
		dst = appendString(dst, e.DataSchema)
	}
	dst = append(dst, `,"`+AttrCorrelationID+`":"`...)
	dst = appendUUID(dst, e.CorrelationID)
	dst = append(dst, '"')
	if e.CausationID != uuid.Nil {
		dst = append(dst, `,"`+AttrCausationID+`":"`...)
		dst = appendUUID(dst, e.CausationID)
		dst = append(dst, '"')
	}
	if e.TraceParent != "" {
		dst = append(dst, `,"`+AttrTraceParent+`":`...)
		dst = appendString(dst, e.TraceParent)
	}
	if e.TraceState != "" {
		dst = append(dst, `,"`+AttrTraceState+`":`...)
		dst = appendString(dst, e.TraceState)
	}
	if e.Position != 0 {
		dst = append(dst, `,"`+AttrPosition+`":"`...)
		dst = strconv.AppendInt(dst, e.Position, 10)
		dst = append(dst, '"')
	}
	if e.StreamVersion != 0 {
		dst = append(dst, `,"`+AttrStreamVersion+`":"`...)
		dst = strconv.AppendInt(dst, e.StreamVersion, 10)
		dst = append(dst, '"')
	}
	if !e.RecordedAt.IsZero() {
		dst = append(dst, `,"`+AttrRecordedTime+`":"`...)
		dst = e.RecordedAt.UTC().AppendFormat(dst, timeLayout)
		dst = append(dst, '"')
	}
	if e.Erased {
		dst = append(dst, `,"`+AttrErased+`":true`...)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, e.Data...)
	return append(dst, '}'), nil
}

// wireEnvelope is the decoding shape of a structured CloudEvent. Integers
// may arrive as strings or as numbers, so they are decoded by hand.
type wireEnvelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema"`
	DataBase64      *string         `json:"data_base64"`
	CorrelationID   string          `json:"correlationid"`
	CausationID     string          `json:"causationid"`
	TraceParent     string          `json:"traceparent"`
	TraceState      string          `json:"tracestate"`
	Position        json.RawMessage `json:"position"`
	StreamVersion   json.RawMessage `json:"streamversion"`
	RecordedTime    string          `json:"recordedtime"`
	Erased          json.RawMessage `json:"erased"`
	Data            json.RawMessage `json:"data"`
}

// UnmarshalJSON decodes e as Decode does.
func (e *Envelope) UnmarshalJSON(b []byte) error {
	out, err := Decode(b)
	if err != nil {
		return err
	}
	*e = out
	return nil
}

// Decode parses a CloudEvents 1.0 structured-mode JSON event. The data is
// kept byte for byte. Every failure wraps ErrMalformed. The input is
// untrusted: Decode never panics, whatever it is given.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if !utf8.Valid(b) {
		return e, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	var w wireEnvelope
	if err := json.Unmarshal(b, &w); err != nil {
		return e, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.SpecVersion != "1.0" {
		return e, fmt.Errorf("%w: specversion %q, want \"1.0\"", ErrMalformed, w.SpecVersion)
	}
	var out Envelope
	var err error
	if out.ID, err = uuid.Parse(w.ID); err != nil {
		return e, fmt.Errorf("%w: id %q is not a UUID", ErrMalformed, w.ID)
	}
	if w.Source == "" || w.Type == "" {
		return e, fmt.Errorf("%w: source and type are required", ErrMalformed)
	}
	out.Source, out.Type, out.Subject = w.Source, w.Type, w.Subject
	if w.DataContentType != "" && !IsJSONMediaType(w.DataContentType) {
		return e, fmt.Errorf("%w: datacontenttype %q is not JSON", ErrMalformed, w.DataContentType)
	}
	if w.DataBase64 != nil {
		return e, fmt.Errorf("%w: data_base64 is not supported, data must be JSON", ErrMalformed)
	}
	if len(w.Data) == 0 || bytes.Equal(w.Data, []byte("null")) {
		return e, fmt.Errorf("%w: data is required", ErrMalformed)
	}
	out.Data = w.Data
	if w.Time != "" {
		if out.OccurredAt, err = time.Parse(time.RFC3339Nano, w.Time); err != nil {
			return e, fmt.Errorf("%w: time %q is not RFC 3339", ErrMalformed, w.Time)
		}
	}
	if w.RecordedTime != "" {
		if out.RecordedAt, err = time.Parse(time.RFC3339Nano, w.RecordedTime); err != nil {
			return e, fmt.Errorf("%w: %s %q is not RFC 3339", ErrMalformed, AttrRecordedTime, w.RecordedTime)
		}
	}
	if out.CorrelationID, err = parseOptionalUUID(w.CorrelationID); err != nil {
		return e, fmt.Errorf("%w: %s %q is not a UUID", ErrMalformed, AttrCorrelationID, w.CorrelationID)
	}
	if out.CausationID, err = parseOptionalUUID(w.CausationID); err != nil {
		return e, fmt.Errorf("%w: %s %q is not a UUID", ErrMalformed, AttrCausationID, w.CausationID)
	}
	out.TraceParent, out.TraceState, out.DataSchema = w.TraceParent, w.TraceState, w.DataSchema
	switch string(w.Erased) {
	case "", "null", "false", `"false"`:
	case "true", `"true"`:
		// A string too: binary-mode transports carry every attribute
		// as one.
		out.Erased = true
	default:
		return e, fmt.Errorf("%w: %s must be a boolean", ErrMalformed, AttrErased)
	}
	if out.Position, err = parseInt64Attr(w.Position); err != nil {
		return e, fmt.Errorf("%w: %s: %v", ErrMalformed, AttrPosition, err)
	}
	if out.StreamVersion, err = parseInt64Attr(w.StreamVersion); err != nil {
		return e, fmt.Errorf("%w: %s: %v", ErrMalformed, AttrStreamVersion, err)
	}
	return out, nil
}

// IsJSONMediaType reports whether mediaType (parameters allowed) is JSON:
// application/json or a +json structured syntax suffix.
func IsJSONMediaType(mediaType string) bool {
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func parseOptionalUUID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	return uuid.Parse(s)
}

// parseInt64Attr reads an integer attribute sent as a decimal string (the
// bus's own form) or as a JSON number (what a lenient producer might send).
func parseInt64Attr(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s is not a non-negative 64-bit integer", raw)
	}
	return n, nil
}

func appendUUID(dst []byte, id uuid.UUID) []byte {
	var buf [36]byte
	encodeHex(buf[:], id)
	return append(dst, buf[:]...)
}

// encodeHex writes id in its canonical 8-4-4-4-12 form without allocating.
func encodeHex(dst []byte, id uuid.UUID) {
	const hexdigits = "0123456789abcdef"
	j := 0
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexdigits[b>>4]
		dst[j+1] = hexdigits[b&0x0f]
		j += 2
	}
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; HTML characters are left alone.
func appendString(dst []byte, s string) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexdigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
