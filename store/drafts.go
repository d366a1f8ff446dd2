package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// MaxBatch is the most drafts one append takes.
const MaxBatch = 10000

// MaxSubjectLen is the longest stream name, in bytes.
const MaxSubjectLen = event.MaxSubjectLen

// MaxDataDepth is how deeply event data may nest arrays and objects (see
// event.MaxDataDepth).
const MaxDataDepth = event.MaxDataDepth

// CheckDrafts reports the first reason why drafts cannot be appended as they
// are: every draft needs an ID, a source, a time, a correlation ID, and
// IDs must differ within a batch; and every draft must keep the input
// limits (event.CheckDraft: its type, source, subject and data), so that
// whatever is stored can be published. The bus fills the first before it
// appends; stores call CheckDrafts so that a direct caller gets the same
// clear error. Errors wrap event.ErrInvalid; a broken input limit is an
// *event.FieldError.
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
		case d.ExpectedVersion != nil && d.Subject == "":
			return fail("expected_version needs a subject")
		case d.ExpectedVersion != nil && *d.ExpectedVersion < 0:
			return fail("expected_version must not be negative")
		}
		if err := event.CheckDraft(d); err != nil {
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

// validText reports whether s can be stored as text: valid UTF-8, and no NUL,
// which PostgreSQL text cannot hold.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
