package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/edupulse/eventbus/store"
)

// filterFlags are the event filters shared by events, tail and replay: the
// same as the HTTP API's query parameters.
type filterFlags struct {
	types         []string
	correlationID string
	subject       string
	since, until  string
	fromPosition  int64
	toPosition    int64
}

func (f *filterFlags) add(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.types, "type", nil, "only events of this type (repeat or comma-separate for several)")
	fs.StringVar(&f.correlationID, "correlation-id", "", "only events with this correlation ID")
	fs.StringVar(&f.subject, "subject", "", "only events of this stream")
	fs.StringVar(&f.since, "since", "", "only events that occurred at or after this time: RFC 3339 (2026-11-27T08:00:00Z) or a duration ago (15m, 24h)")
	fs.StringVar(&f.until, "until", "", "only events that occurred before this time: RFC 3339 or a duration ago")
	fs.Int64Var(&f.fromPosition, "from-position", 0, "only events at this global position or later")
	fs.Int64Var(&f.toPosition, "to-position", 0, "only events at this global position or earlier")
}

// filter builds the store filter; mistakes are usage errors.
func (f *filterFlags) filter(cmd *cobra.Command) (store.Filter, error) {
	var out store.Filter
	for _, t := range f.types {
		if t = strings.TrimSpace(t); t != "" {
			out.Types = append(out.Types, t)
		}
	}
	if f.correlationID != "" {
		id, err := uuid.Parse(f.correlationID)
		if err != nil {
			return out, usagef(cmd, "--correlation-id %q is not a UUID", f.correlationID)
		}
		out.CorrelationID = id
	}
	out.Subject = f.subject
	var err error
	if out.Since, err = store.ParseTime(f.since, time.Now()); err != nil {
		return out, usagef(cmd, "--since: %v", err)
	}
	if out.Until, err = store.ParseTime(f.until, time.Now()); err != nil {
		return out, usagef(cmd, "--until: %v", err)
	}
	if f.fromPosition < 0 || f.toPosition < 0 {
		return out, usagef(cmd, "--from-position and --to-position must not be negative")
	}
	out.FromPosition, out.ToPosition = f.fromPosition, f.toPosition
	return out, nil
}

// parseCursor reads a cursor token given on the command line.
func parseCursor(cmd *cobra.Command, flag, token string) (store.Cursor, error) {
	c, err := store.ParseCursor(token)
	if err != nil {
		return c, usagef(cmd, "--%s: %v; use the token eventbus printed", flag, err)
	}
	return c, nil
}

// positionOrTime reads --from of tail: a global position, or a time.
func positionOrTime(s string) (position int64, at time.Time, err error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, time.Time{}, fmt.Errorf("position %d is negative", n)
		}
		return n, time.Time{}, nil
	}
	at, err = store.ParseTime(s, time.Now())
	return 0, at, err
}
