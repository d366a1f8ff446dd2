package store

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/edupulse/eventbus/event"
)

// Cursor is a place in the commit-ordered sequence of events. Readers resume
// after it. The zero Cursor is the beginning.
//
// Order is the store's commit-order key and Position the global position that
// breaks ties; callers treat both as opaque, and pass cursors around as
// tokens (String, ParseCursor).
type Cursor struct {
	Order    uint64
	Position int64
}

// CursorOf returns the cursor just at e: reading after it continues with the
// event that follows e.
func CursorOf(e event.Envelope) Cursor {
	return Cursor{Order: e.CommitOrder, Position: e.Position}
}

// IsZero reports whether c is the beginning.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// Less reports whether c comes before d.
func (c Cursor) Less(d Cursor) bool {
	if c.Order != d.Order {
		return c.Order < d.Order
	}
	return c.Position < d.Position
}

// cursorVersion tags the token format, so that it can change.
const cursorVersion = 1

// String returns c as an opaque, URL-safe token; "" for the zero cursor.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	buf := make([]byte, 1, 1+2*binary.MaxVarintLen64)
	buf[0] = cursorVersion
	buf = binary.AppendUvarint(buf, c.Order)
	buf = binary.AppendUvarint(buf, uint64(c.Position))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// MarshalText implements encoding.TextMarshaler.
func (c Cursor) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Cursor) UnmarshalText(b []byte) error {
	parsed, err := ParseCursor(string(b))
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// ParseCursor parses a token made by Cursor.String. The empty token is the
// zero cursor. Anything else that is not such a token wraps ErrBadCursor.
func ParseCursor(token string) (Cursor, error) {
	if token == "" {
		return Cursor{}, nil
	}
	if len(token) > 64 {
		return Cursor{}, fmt.Errorf("%w: token too long", ErrBadCursor)
	}
	buf, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(buf) < 3 || buf[0] != cursorVersion {
		return Cursor{}, fmt.Errorf("%w: %q is not a cursor this store issued", ErrBadCursor, token)
	}
	order, n := binary.Uvarint(buf[1:])
	if n <= 0 {
		return Cursor{}, fmt.Errorf("%w: %q is not a cursor this store issued", ErrBadCursor, token)
	}
	pos, m := binary.Uvarint(buf[1+n:])
	if m <= 0 || 1+n+m != len(buf) || pos > 1<<63-1 {
		return Cursor{}, fmt.Errorf("%w: %q is not a cursor this store issued", ErrBadCursor, token)
	}
	return Cursor{Order: order, Position: int64(pos)}, nil
}
