package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// POST /v1/events takes CloudEvents 1.0 in the three content modes of the
// CloudEvents HTTP protocol binding, besides the bus's own envelope:
//
//   - structured: Content-Type application/cloudevents+json, one event as a
//     JSON object (the JSON event format);
//   - batched: Content-Type application/cloudevents-batch+json, a JSON array
//     of such objects, stored atomically;
//   - binary: the attributes in ce- headers (percent-encoded), the body the
//     event's data and Content-Type its datacontenttype.
//
// Every mode keeps the input limits of the envelope, and the bus keeps
// every attribute it accepts: what it has no place for (an unknown
// extension, binary data) is refused with a 400 naming the attribute,
// never dropped. The dataschema names the version of the data (DESIGN
// "Type versions"); for a known type it must be one of its versions.

// Media types of the CloudEvents JSON formats.
const (
	ContentTypeCloudEventBatch = "application/cloudevents-batch+json"
	cloudEventsMediaPrefix     = "application/cloudevents"
)

// AttrExpectedVersion is the extension attribute of a CloudEvent that
// carries expected_version: the version the event's stream (subject) must
// be at before it is appended. Like the bus's other 64-bit attributes it is
// a decimal string; in structured mode a JSON integer is taken too.
const AttrExpectedVersion = "expectedversion"

// publishMode is how a POST /v1/events body is to be read.
type publishMode uint8

const (
	modeEnvelope   publishMode = iota // the bus's {type, data, ...} or {"events": [...]}
	modeStructured                    // application/cloudevents+json
	modeBatch                         // application/cloudevents-batch+json
	modeBinary                        // ce- headers, the body is the data
)

// publishModeOf picks the content mode as the HTTP binding says: a
// Content-Type of the CloudEvents media type is structured or batched
// mode; otherwise a request with ce- headers is binary mode, and one
// without is the bus's envelope. A media type the mode cannot take is a
// 415.
func publishModeOf(h http.Header) (publishMode, *Problem) {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	charset := params["charset"]
	utf8Charset := charset == "" || strings.EqualFold(charset, "utf-8")
	switch {
	case err == nil && strings.HasPrefix(mt, cloudEventsMediaPrefix):
		mode := modeStructured
		switch mt {
		case event.ContentType:
		case ContentTypeCloudEventBatch:
			mode = modeBatch
		default:
			return 0, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
				fmt.Sprintf("the CloudEvents format %s is not supported; send %s (one event) or %s (a batch), or use binary mode",
					clip(mt), event.ContentType, ContentTypeCloudEventBatch))
		}
		if !utf8Charset {
			return 0, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
				fmt.Sprintf("a CloudEvent in JSON is UTF-8; the request has Content-Type %s", clip(ct)))
		}
		return mode, nil
	case hasCloudEventHeader(h):
		if err != nil || mt != event.DataContentType || !utf8Charset {
			got := "no Content-Type"
			if ct != "" {
				got = "Content-Type " + clip(ct)
			}
			return 0, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
				"in binary mode (ce- headers) the body is the event's data and Content-Type its datacontenttype; "+
					"the bus stores data as JSON, application/json: send Content-Type: application/json; the request has "+got)
		}
		return modeBinary, nil
	}
	return modeEnvelope, jsonMediaProblem(ct, mt, charset, err)
}

// hasCloudEventHeader reports whether h has a ce- header. It allocates
// nothing: the hot path of the envelope runs it too.
func hasCloudEventHeader(h http.Header) bool {
	for k := range h {
		if isCloudEventHeader(k) {
			return true
		}
	}
	return false
}

func isCloudEventHeader(k string) bool {
	return len(k) > 3 && k[0]|0x20 == 'c' && k[1]|0x20 == 'e' && k[2] == '-'
}

// decodePublish reads a POST /v1/events body in its mode. batch says the
// answer is a list.
func decodePublish(mode publishMode, h http.Header, body []byte) (drafts []event.Draft, batch bool, p *Problem) {
	switch mode {
	case modeStructured:
		d, p := decodeStructured(body)
		if p != nil {
			return nil, false, p
		}
		return []event.Draft{d}, false, nil
	case modeBatch:
		drafts, p := decodeCloudEventBatch(body)
		return drafts, true, p
	case modeBinary:
		d, p := decodeBinary(h, body)
		if p != nil {
			return nil, false, p
		}
		return []event.Draft{d}, false, nil
	}
	return decodeEvents(body)
}

// ceAttr is a CloudEvents attribute that the bus reads.
type ceAttr uint8

const (
	attrSpecVersion ceAttr = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrDataContentType
	attrDataSchema
	attrCorrelationID
	attrCausationID
	attrTraceParent
	attrTraceState
	attrExpectedVersion
	attrPosition
	attrStreamVersion
	attrRecordedTime
	numAttrs
)

var ceAttrNames = [numAttrs]string{
	attrSpecVersion:     "specversion",
	attrID:              "id",
	attrSource:          "source",
	attrType:            "type",
	attrSubject:         "subject",
	attrTime:            "time",
	attrDataContentType: "datacontenttype",
	attrDataSchema:      "dataschema",
	attrCorrelationID:   event.AttrCorrelationID,
	attrCausationID:     event.AttrCausationID,
	attrTraceParent:     event.AttrTraceParent,
	attrTraceState:      event.AttrTraceState,
	attrExpectedVersion: AttrExpectedVersion,
	attrPosition:        event.AttrPosition,
	attrStreamVersion:   event.AttrStreamVersion,
	attrRecordedTime:    event.AttrRecordedTime,
}

// lookupAttr finds the attribute named name, case-insensitively (header
// names are), without allocating.
func lookupAttr(name string) (ceAttr, bool) {
	for a, n := range ceAttrNames {
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return ceAttr(a), true
		}
	}
	return 0, false
}

// validAttrName reports whether name is a CloudEvents attribute name:
// lower-case ASCII letters and digits.
func validAttrName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// keptAttrs lists the attributes the bus keeps, for error messages.
const keptAttrs = "specversion, id, source, type, subject, time, datacontenttype (application/json), dataschema, " +
	event.AttrCorrelationID + ", " + event.AttrCausationID + ", " + event.AttrTraceParent + ", " +
	event.AttrTraceState + " and " + AttrExpectedVersion

// ceAttrs is a CloudEvent as read from a body or headers, before its
// attributes are checked.
type ceAttrs struct {
	val     [numAttrs]string
	set     uint32 // bit a: attribute a is present
	data    []byte
	hasData bool
	// base64 is the text of data_base64 (structured mode).
	base64    string
	hasBase64 bool
}

func (c *ceAttrs) has(a ceAttr) bool { return c.set&(1<<a) != 0 }

func (c *ceAttrs) put(a ceAttr, v string) {
	c.val[a] = v
	c.set |= 1 << a
}

// attrProblem is the 400 for an attribute of a CloudEvent.
func attrProblem(field, format string, args ...any) *Problem {
	return newProblem(http.StatusBadRequest, ProblemInvalidEvent, fmt.Sprintf(format, args...)).atField(field)
}

// draft checks the attributes and returns the draft they make. index is
// the event's place in a batch, or -1.
func (c *ceAttrs) draft(index int) (event.Draft, *Problem) {
	d, p := c.check()
	if p != nil {
		return event.Draft{}, inEvent(p, index)
	}
	return d, nil
}

func (c *ceAttrs) check() (event.Draft, *Problem) {
	var d event.Draft
	// Every attribute is a CloudEvents String: UTF-8 without control
	// characters. Check them all first, so that every message below may
	// quote them.
	for a := range numAttrs {
		if c.has(a) {
			if p := checkAttrString(ceAttrNames[a], c.val[a]); p != nil {
				return d, p
			}
		}
	}
	switch sv := c.val[attrSpecVersion]; {
	case !c.has(attrSpecVersion):
		return d, attrProblem("specversion", `specversion is required: "1.0"`)
	case sv != "1.0":
		return d, attrProblem("specversion", `specversion %s is not supported; send "1.0" (CloudEvents 1.0)`, clip(sv))
	}
	for _, a := range []ceAttr{attrPosition, attrStreamVersion, attrRecordedTime} {
		if c.has(a) {
			return d, attrProblem(ceAttrNames[a], "%s is assigned by the store when it records the event; leave it out "+
				"(to make the append depend on the stream's version, send %s)", ceAttrNames[a], AttrExpectedVersion)
		}
	}
	if c.has(attrDataSchema) {
		d.DataSchema = c.val[attrDataSchema]
		if err := event.CheckDataSchema(d.DataSchema); err != nil {
			return d, limitProblem(err)
		}
	}
	var ok bool
	if !c.has(attrID) || c.val[attrID] == "" {
		return d, attrProblem("id", "id is required: a UUID such as 0190d1e2-7c4a-7b3e-8f00-1234567890ab, which makes a retry store nothing twice")
	}
	if d.ID, ok = canonicalUUID(c.val[attrID]); !ok {
		return d, attrProblem("id", "id %s is not a UUID in canonical form (36 characters, lower-case hex, such as 0190d1e2-7c4a-7b3e-8f00-1234567890ab); "+
			"the bus keeps event ids as UUIDs, and reads them back in that form", clip(c.val[attrID]))
	}
	if !c.has(attrSource) {
		return d, attrProblem("source", `source is required: a URI-reference that names the producer, such as "/quiz-service"`)
	}
	d.Source = c.val[attrSource]
	if err := event.CheckSource(d.Source); err != nil {
		return d, limitProblem(err)
	}
	d.Type = c.val[attrType]
	if err := event.CheckTypeName(d.Type); err != nil {
		return d, limitProblem(err)
	}
	if c.has(attrSubject) {
		if c.val[attrSubject] == "" {
			return d, attrProblem("subject", "subject must not be empty; leave it out, or name the stream")
		}
		d.Subject = c.val[attrSubject]
		if err := event.CheckSubject(d.Subject); err != nil {
			return d, limitProblem(err)
		}
	}
	if c.has(attrTime) {
		t, err := time.Parse(time.RFC3339Nano, c.val[attrTime])
		if err != nil {
			return d, attrProblem("time", "time %s is not an RFC 3339 timestamp such as 2026-01-02T03:04:05.123456Z", clip(c.val[attrTime]))
		}
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return d, attrProblem("time", "time %s is in year %d; RFC 3339 times are in years 1 to 9999", clip(c.val[attrTime]), y)
		}
		d.OccurredAt = t
	}
	if c.has(attrDataContentType) && !isPlainJSON(c.val[attrDataContentType]) {
		return d, attrProblem("datacontenttype", "datacontenttype %s is not kept by the bus, which stores data as JSON and reads it back as %s; "+
			"send JSON data with datacontenttype %s, or leave it out", clip(c.val[attrDataContentType]), event.DataContentType, event.DataContentType)
	}
	if c.has(attrCorrelationID) {
		if d.CorrelationID, ok = canonicalUUID(c.val[attrCorrelationID]); !ok {
			return d, attrProblem(event.AttrCorrelationID, "%s %s is not a UUID in canonical form (36 characters, lower-case hex)",
				event.AttrCorrelationID, clip(c.val[attrCorrelationID]))
		}
	}
	if c.has(attrCausationID) {
		if d.CausationID, ok = canonicalUUID(c.val[attrCausationID]); !ok {
			return d, attrProblem(event.AttrCausationID, "%s %s is not a UUID in canonical form (36 characters, lower-case hex)",
				event.AttrCausationID, clip(c.val[attrCausationID]))
		}
	}
	if c.has(attrTraceParent) {
		d.TraceParent = c.val[attrTraceParent]
		if !validTraceParent(d.TraceParent) {
			return d, attrProblem(event.AttrTraceParent, "%s %s is not a W3C traceparent such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				event.AttrTraceParent, clip(d.TraceParent))
		}
	}
	if c.has(attrTraceState) {
		if !c.has(attrTraceParent) {
			return d, attrProblem(event.AttrTraceState, "%s needs %s: it is part of the same trace context", event.AttrTraceState, event.AttrTraceParent)
		}
		d.TraceState = c.val[attrTraceState]
	}
	if c.has(attrExpectedVersion) {
		v, ok := parseVersion(c.val[attrExpectedVersion])
		switch {
		case !ok:
			return d, attrProblem(AttrExpectedVersion, "%s %s must be an integer from 0 (the stream must not exist yet) to 9223372036854775807, "+
				"as a JSON integer or a decimal string", AttrExpectedVersion, clip(c.val[attrExpectedVersion]))
		case d.Subject == "":
			return d, attrProblem(AttrExpectedVersion, "%s needs a subject: it is the version that stream must be at", AttrExpectedVersion)
		}
		d.ExpectedVersion = &v
	}
	if c.hasBase64 {
		return c.base64Data(d)
	}
	if !c.hasData || len(c.data) == 0 || string(c.data) == "null" {
		return d, attrProblem("data", "data is required: the event's payload, as JSON")
	}
	d.Data = c.data
	return d, nil
}

// base64Data completes d with data sent as data_base64. The JSON format
// sends binary data so, and the Go SDK sends []byte data so even when it is
// JSON: such data is kept when datacontenttype says it is JSON, and it is
// strict JSON. It then reads back as the same bytes in data, which the JSON
// format makes the same event.
func (c *ceAttrs) base64Data(d event.Draft) (event.Draft, *Problem) {
	switch {
	case c.hasData:
		return d, attrProblem("data_base64", "data and data_base64 are both present; send one")
	case !c.has(attrDataContentType):
		return d, attrProblem("data_base64", "data_base64 (binary data) without a datacontenttype is not kept by the bus, which stores data as JSON; "+
			"send JSON data in data, or say it is JSON with datacontenttype %s", event.DataContentType)
	}
	data, err := base64.StdEncoding.DecodeString(c.base64)
	if err != nil {
		return d, attrProblem("data_base64", "data_base64 is not Base64 (RFC 4648, with padding): %v", err)
	}
	if err := event.CheckData(data); err != nil {
		var fe *event.FieldError
		if errors.As(err, &fe) {
			return d, attrProblem("data_base64", "data_base64 decodes to data that breaks the input limits: %s %s", fe.Field, fe.Reason)
		}
		return d, limitProblem(err)
	}
	d.Data = data
	return d, nil
}

// limitProblem is the 400 for an input limit of the event package.
func limitProblem(err error) *Problem {
	var fe *event.FieldError
	if errors.As(err, &fe) {
		return fieldProblem(fe.Field, fe.Reason)
	}
	return newProblem(http.StatusBadRequest, ProblemInvalidEvent, err.Error())
}

// checkAttrString checks a CloudEvents String: valid UTF-8 without the
// control characters U+0000–U+001F and U+007F–U+009F.
func checkAttrString(name, s string) *Problem {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return attrProblem(name, "%s must not contain control characters (byte %d is %#02x)", name, i, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return attrProblem(name, "%s is not valid UTF-8 (at byte %d)", name, i)
		case r <= 0x9f:
			return attrProblem(name, "%s must not contain control characters (U+%04X at byte %d)", name, r, i)
		}
		i += size
	}
	return nil
}

// canonicalUUID parses s when it is a UUID in the form the bus writes:
// 8-4-4-4-12 lower-case hex, not the nil UUID. A CloudEvents id is compared
// as a string, so any other spelling would read back as another id.
func canonicalUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.Nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'F' {
			return uuid.Nil, false
		}
	}
	id, err := uuid.Parse(s)
	return id, err == nil && id != uuid.Nil
}

// isPlainJSON reports whether mediaType is application/json, with at most
// a charset of UTF-8: what the bus reads back as datacontenttype.
func isPlainJSON(mediaType string) bool {
	mt, params, err := mime.ParseMediaType(mediaType)
	if err != nil || mt != event.DataContentType {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// validTraceParent reports whether s is a W3C traceparent: version,
// trace-id, parent-id and flags in lower-case hex; a version after 00 may
// append fields.
func validTraceParent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && s[55] != '-') {
		return false
	}
	version := s[:2]
	if version == "ff" || (version == "00" && len(s) != 55) {
		return false
	}
	for _, part := range []string{version, s[3:35], s[36:52], s[53:55]} {
		for i := 0; i < len(part); i++ {
			if c := part[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return strings.Trim(s[3:35], "0") != "" && strings.Trim(s[36:52], "0") != ""
}

// parseVersion reads a stream version: decimal digits, 0 to MaxInt64.
func parseVersion(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// decodeStructured reads a structured-mode body: one CloudEvent in the
// JSON event format.
func decodeStructured(body []byte) (event.Draft, *Problem) {
	if p := checkCloudEventJSON(body, event.MaxDataDepth+1, false); p != nil {
		return event.Draft{}, p
	}
	return decodeCloudEventObject(body, -1)
}

// decodeCloudEventBatch reads a batched-mode body: a JSON array of
// CloudEvents, stored atomically.
func decodeCloudEventBatch(body []byte) ([]event.Draft, *Problem) {
	if p := checkCloudEventJSON(body, event.MaxDataDepth+2, true); p != nil {
		return nil, p
	}
	i := skipSpace(body, 0)
	if body[i] != '[' {
		return nil, newProblem(http.StatusBadRequest, ProblemMalformedRequest,
			"a batch ("+ContentTypeCloudEventBatch+") is a JSON array of CloudEvents; send one event as "+event.ContentType)
	}
	var drafts []event.Draft
	var seen map[uuid.UUID]int
	for elem := range jsonElements(body[i:]) {
		n := len(drafts)
		if n == store.MaxBatch {
			return nil, newProblem(http.StatusBadRequest, ProblemMalformedRequest,
				fmt.Sprintf("the batch holds more than %d events; send at most %d in one batch", store.MaxBatch, store.MaxBatch))
		}
		d, p := decodeCloudEventObject(elem, n)
		if p != nil {
			return nil, p
		}
		if seen == nil {
			seen = make(map[uuid.UUID]int)
		}
		if j, dup := seen[d.ID]; dup {
			return nil, inEvent(attrProblem("id", "id %s is also the id of events[%d]; every event needs its own id", d.ID, j), n)
		}
		seen[d.ID] = n
		drafts = append(drafts, d)
	}
	if len(drafts) == 0 {
		return nil, newProblem(http.StatusBadRequest, ProblemMalformedRequest, "the batch is empty; send at least one event")
	}
	return drafts, nil
}

// checkCloudEventJSON checks that body is strict JSON (event.CheckJSON),
// with data nested at most event.MaxDataDepth levels below the event.
func checkCloudEventJSON(body []byte, depth int, batch bool) *Problem {
	if len(body) == 0 || skipSpace(body, 0) == len(body) {
		return newProblem(http.StatusBadRequest, ProblemMalformedRequest, "the body is empty; send a CloudEvent in JSON")
	}
	if err := event.CheckJSON(body, depth); err != nil {
		return strictProblem(err, batch)
	}
	return nil
}

// decodeCloudEventObject reads one CloudEvent in the JSON event format
// from raw, a value that event.CheckJSON accepted. index is its place in a
// batch, or -1. Data is a piece of raw, not a copy.
func decodeCloudEventObject(raw []byte, index int) (event.Draft, *Problem) {
	if raw[skipSpace(raw, 0)] != '{' {
		return event.Draft{}, inEvent(newProblem(http.StatusBadRequest, ProblemMalformedRequest,
			`a CloudEvent is a JSON object {"specversion": "1.0", "id": ..., "source": ..., "type": ..., "data": ...}`), index)
	}
	var c ceAttrs
	for key, value := range jsonMembers(raw) {
		name := unquoteJSON(key)
		isNull := string(value) == "null"
		switch {
		case name == "data":
			c.data, c.hasData = value, true
			continue
		case name == "data_base64":
			switch {
			case isNull:
			case value[0] != '"':
				return event.Draft{}, inEvent(attrProblem("data_base64", "data_base64 must be a string of Base64"), index)
			default:
				c.base64, c.hasBase64 = unquoteJSON(value), true
			}
			continue
		case !validAttrName(name):
			return event.Draft{}, inEvent(attrProblem(name, "%s is not a CloudEvents attribute name (lower-case letters and digits only); "+
				"a CloudEvent here has %s, and data", clip(name), keptAttrs), index)
		}
		a, known := lookupAttr(name)
		switch {
		case isNull:
			// The JSON format: null is an unset attribute.
			continue
		case !known:
			return event.Draft{}, inEvent(attrProblem(name, "the extension attribute %s is not kept by the bus, and would be lost; "+
				"leave it out (a CloudEvent here has %s, and data)", name, keptAttrs), index)
		case value[0] == '"':
			c.put(a, unquoteJSON(value))
		case a == attrExpectedVersion && (value[0] == '-' || value[0] >= '0' && value[0] <= '9'):
			c.put(a, string(value))
		default:
			return event.Draft{}, inEvent(attrProblem(name, "%s must be a string, not %s", name, clip(string(value))), index)
		}
	}
	return c.draft(index)
}

// decodeBinary reads a binary-mode request: the attributes in its ce-
// headers, the data in its body.
func decodeBinary(h http.Header, body []byte) (event.Draft, *Problem) {
	var c ceAttrs
	// Map order is random: report the first bad header by name, so that
	// the same request always gets the same answer.
	var bad string
	var badProblem *Problem
	fail := func(header string, p *Problem) {
		if badProblem == nil || header < bad {
			bad, badProblem = header, p
		}
	}
	for k, vs := range h {
		if !isCloudEventHeader(k) {
			continue
		}
		// Header names are case-insensitive; the lower-case name is needed
		// only for an error, so it is made only then.
		a, known := lookupAttr(k[3:])
		if known && len(vs) == 1 && a != attrDataContentType {
			v, why := decodeHeaderValue(vs[0])
			if why == "" {
				c.put(a, v)
				continue
			}
		}
		header := strings.ToLower(k)
		name := header[3:]
		switch {
		case known && a == attrDataContentType:
			fail(header, attrProblem("datacontenttype", "in binary mode the datacontenttype is the Content-Type header; "+
				"a ce-datacontenttype header must not be sent"))
			continue
		case !validAttrName(name):
			fail(header, attrProblem(name, "header %s does not name a CloudEvents attribute (lower-case letters and digits after ce-); "+
				"a CloudEvent here has %s", clip(header), keptAttrs))
			continue
		case !known:
			fail(header, attrProblem(name, "the extension attribute %s (header %s) is not kept by the bus, and would be lost; "+
				"leave it out (a CloudEvent here has %s)", name, header, keptAttrs))
			continue
		case len(vs) != 1:
			fail(header, attrProblem(name, "header %s appears %d times; send it once", header, len(vs)))
			continue
		}
		_, why := decodeHeaderValue(vs[0])
		fail(header, attrProblem(name, "header %s: %s", header, why))
	}
	if badProblem != nil {
		return event.Draft{}, badProblem
	}
	if len(body) > 0 {
		if err := event.CheckData(body); err != nil {
			if errors.Is(err, event.ErrNotJSON) {
				var fe *event.FieldError
				errors.As(err, &fe)
				return event.Draft{}, newProblem(http.StatusBadRequest, ProblemMalformedRequest,
					"the body, the event's data in binary mode, "+fe.Reason)
			}
			return event.Draft{}, limitProblem(err)
		}
		c.data, c.hasData = body, true
	}
	return c.draft(-1)
}

// decodeHeaderValue decodes a ce- header value as the HTTP binding says: a
// double-quoted string is unquoted, then percent-escapes are decoded, and
// the result must be UTF-8. It returns why the value is malformed, or "".
// A value with neither quotes nor escapes is returned as it is.
func decodeHeaderValue(v string) (string, string) {
	if strings.HasPrefix(v, `"`) {
		var sb strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			switch c := v[i]; {
			case c == '\\' && i+1 < len(v):
				i++
				sb.WriteByte(v[i])
			case c == '"' && i == len(v)-1:
				closed = true
			case c == '"' || c == '\\':
				return "", "a double-quoted value ends before its end, or holds an unescaped quote"
			default:
				sb.WriteByte(c)
			}
		}
		if !closed {
			return "", "a double-quoted value misses its closing quote"
		}
		v = sb.String()
	}
	if strings.IndexByte(v, '%') < 0 {
		if !utf8.ValidString(v) {
			return "", "the value is not UTF-8"
		}
		return v, ""
	}
	buf := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '%' {
			buf = append(buf, c)
			continue
		}
		if i+2 >= len(v) || !isHexDigit(v[i+1]) || !isHexDigit(v[i+2]) {
			return "", fmt.Sprintf("the '%%' at byte %d does not start a percent-escape of two hex digits (send '%%' as %%25)", i)
		}
		buf = append(buf, unhex(v[i+1])<<4|unhex(v[i+2]))
		i += 2
	}
	if !utf8.Valid(buf) {
		return "", "the value percent-decodes to bytes that are not UTF-8"
	}
	return string(buf), ""
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// The walkers below read JSON that event.CheckJSON has accepted: they find
// the pieces of it, and trust its syntax. They never index past the end,
// whatever they are given.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i = stringEnd(b, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the object or array around a scalar
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// stringEnd returns the end of the JSON string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// jsonMembers yields the key (quoted) and value of each member of the
// JSON object that starts b.
func jsonMembers(b []byte) func(yield func(key, value []byte) bool) {
	return func(yield func(key, value []byte) bool) {
		i := skipSpace(b, 0) + 1 // past '{'
		for {
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != '"' {
				return
			}
			end := stringEnd(b, i)
			key := b[i:end]
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return
			}
			i = skipSpace(b, i+1)
			end = valueEnd(b, i)
			if end <= i || !yield(key, b[i:end]) {
				return
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ',' {
				return
			}
			i++
		}
	}
}

// jsonElements yields each element of the JSON array that starts b.
func jsonElements(b []byte) func(yield func(elem []byte) bool) {
	return func(yield func(elem []byte) bool) {
		i := skipSpace(b, 0) + 1 // past '['
		for {
			i = skipSpace(b, i)
			if i >= len(b) || b[i] == ']' {
				return
			}
			end := valueEnd(b, i)
			if end <= i || !yield(b[i:end]) {
				return
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ',' {
				return
			}
			i++
		}
	}
}

// unquoteJSON returns the text of a JSON string that event.CheckJSON
// accepted (so its escapes are valid, and it holds no lone surrogate).
func unquoteJSON(raw []byte) string {
	if len(raw) < 2 {
		return ""
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return ""
			}
			return s
		}
	}
	return string(inner)
}
