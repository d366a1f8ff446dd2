package store_test

import (
	"encoding/base64"
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// TestCursorTokensRoundTrip: every cursor survives its token, and tokens
// keep the cursors' order's meaning (a token names exactly one cursor).
func TestCursorTokensRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := store.Cursor{
			Order:    rapid.Uint64().Draw(t, "order"),
			Position: rapid.Int64Min(0).Draw(t, "position"),
		}
		got, err := store.ParseCursor(c.String())
		if err != nil {
			t.Fatalf("ParseCursor(%q): %v", c.String(), err)
		}
		if got != c {
			t.Fatalf("round trip of %+v gave %+v", c, got)
		}
	})
}

// TestParseCursorTakesAnyInput: cursor tokens come from HTTP clients. Any
// string, or any token-shaped bytes, either parses to a cursor that its own
// token gives back, or is refused with ErrBadCursor; nothing panics.
func TestParseCursorTakesAnyInput(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		token := rapid.OneOf(
			rapid.String(),
			rapid.Map(rapid.SliceOfN(rapid.Byte(), 0, 24), func(b []byte) string {
				return base64.RawURLEncoding.EncodeToString(append([]byte{1}, b...))
			}),
		).Draw(t, "token")
		c, err := store.ParseCursor(token)
		if err != nil {
			if !errors.Is(err, store.ErrBadCursor) {
				t.Fatalf("ParseCursor(%q): %v, want ErrBadCursor", token, err)
			}
			return
		}
		if again, err := store.ParseCursor(c.String()); err != nil || again != c {
			t.Fatalf("ParseCursor(%q) = %+v, whose own token parses to %+v, %v", token, c, again, err)
		}
	})
}

// TestPageAfter: a page's Next is its last event's cursor, and an empty
// page keeps the cursor it was read after, so paging never goes back.
func TestPageAfter(t *testing.T) {
	after := store.Cursor{Order: 7, Position: 3}
	if got := store.PageAfter(after, nil); got.Next != after || len(got.Events) != 0 {
		t.Fatalf("empty page = %+v, want Next %v", got, after)
	}
	events := []event.Envelope{{Position: 4, CommitOrder: 9}, {Position: 5, CommitOrder: 12}}
	got := store.PageAfter(after, events)
	if want := (store.Cursor{Order: 12, Position: 5}); got.Next != want || len(got.Events) != 2 {
		t.Fatalf("page = %+v, want Next %v and both events", got, want)
	}
}
