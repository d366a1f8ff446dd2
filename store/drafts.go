package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// MaxBatch is the most drafts one append takes.
const MaxBatch = 10000

// MaxSubjectLen is the longest stream name, in bytes.
const MaxSubjectLen = 512

// MaxDataDepth is how deeply event data may nest arrays and objects. The
// envelope adds a level on the way to consumers, and JSON decoders stop at
// some depth (Go's at 10,000, Jackson's at 1,000 by default): deeper data
// would be stored, then dead-lettered as malformed by every consumer.
const MaxDataDepth = 512

// CheckDrafts reports the first reason why drafts cannot be appended as they
// are: every draft needs an ID, a well-formed type, a source, a time, a
// correlation ID and JSON data, and IDs must differ within a batch. The bus
// fills these before it appends; stores call CheckDrafts so that a direct
// caller gets the same clear error. Errors wrap event.ErrInvalid.
func CheckDrafts(drafts []event.Draft) error {
	if len(drafts) == 0 {
		return fmt.Errorf("%w: no events to append", event.ErrInvalid)
	}
	if len(drafts) > MaxBatch {
		return fmt.Errorf("%w: %d events in one batch, at most %d", event.ErrInvalid, len(drafts), MaxBatch)
	}
	seen := make(map[uuid.UUID]struct{}, len(drafts))
	for i := range drafts {
		d := &drafts[i]
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: event %d (%s): %s", event.ErrInvalid, i, d.ID, fmt.Sprintf(format, args...))
		}
		switch {
		case d.ID == uuid.Nil:
			return fail("id is required")
		case d.Source == "":
			return fail("source is required")
		case d.OccurredAt.IsZero():
			return fail("occurred_at is required")
		case d.CorrelationID == uuid.Nil:
			return fail("correlation_id is required")
		case len(d.Subject) > MaxSubjectLen:
			return fail("subject is longer than %d bytes", MaxSubjectLen)
		case !validText(d.Subject) || !validText(d.Source) || !validText(d.TraceParent) || !validText(d.TraceState):
			return fail("text attributes must be valid UTF-8 without NUL characters")
		case d.ExpectedVersion != nil && d.Subject == "":
			return fail("expected_version needs a subject")
		case d.ExpectedVersion != nil && *d.ExpectedVersion < 0:
			return fail("expected_version must not be negative")
		case len(d.Data) == 0 || string(d.Data) == "null":
			return fail("data is required")
		case !utf8.Valid(d.Data) || !json.Valid(d.Data):
			return fail("data is not valid JSON")
		case jsonDepth(d.Data) > MaxDataDepth:
			return fail("data nests arrays and objects more than %d levels deep", MaxDataDepth)
		}
		if err := event.CheckTypeName(d.Type); err != nil {
			return fmt.Errorf("event %d (%s): %w", i, d.ID, err)
		}
		if _, dup := seen[d.ID]; dup {
			return fail("the same id appears twice in the batch")
		}
		seen[d.ID] = struct{}{}
	}
	return nil
}

// CheckFilter reports why f cannot be read with: a subject or a type that
// is not valid UTF-8 or holds NUL, which no store can hold. Stores call it
// so that such a filter gets an error wrapping ErrBadFilter rather than the
// database's complaint.
func CheckFilter(f Filter) error {
	if !validText(f.Subject) {
		return fmt.Errorf("%w: the subject must be valid UTF-8 without NUL characters", ErrBadFilter)
	}
	for _, t := range f.Types {
		if !validText(t) {
			return fmt.Errorf("%w: types must be valid UTF-8 without NUL characters", ErrBadFilter)
		}
	}
	return nil
}

// jsonDepth returns how deeply valid JSON nests arrays and objects.
func jsonDepth(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// validText reports whether s can be stored as text: valid UTF-8, and no NUL,
// which PostgreSQL text cannot hold.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
