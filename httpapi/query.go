package httpapi

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// maxTypes bounds the type filter of one query.
const maxTypes = 100

// query reads the parameters of one request. It rejects parameters the
// route does not take, and repeats of those it takes once. Empty values
// count as absent, as forms send them.
type query struct {
	values url.Values
}

// parseQuery parses a raw query string for a route taking the parameters
// named in allowed (those in repeatable may appear more than once).
func parseQuery(raw string, allowed, repeatable []string) (query, *Problem) {
	values, err := url.ParseQuery(raw)
	if err != nil {
		return query{}, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("the query string is malformed: %v", err))
	}
	for name, vs := range values {
		if !slices.Contains(allowed, name) {
			return query{}, newProblem(400, ProblemInvalidParameter,
				fmt.Sprintf("unknown parameter %s; this route takes %s", clip(name), strings.Join(allowed, ", "))).atField(name)
		}
		if len(vs) > 1 && !slices.Contains(repeatable, name) {
			return query{}, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("%s is given %d times; give it once", name, len(vs))).atField(name)
		}
	}
	return query{values: values}, nil
}

func (q query) get(name string) string { return q.values.Get(name) }

var eventsParams = []string{"after", "limit", "type", "correlation_id", "subject", "since", "until", "from_position", "to_position", "stored"}

// storedFrom reads the stored parameter of a read: true asks for events in
// the version of their type they were stored in, rather than upcast to the
// latest (DESIGN "Type versions").
func storedFrom(q query) (bool, *Problem) {
	v := q.get("stored")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, newProblem(400, ProblemInvalidParameter,
			fmt.Sprintf("stored %s must be true (events in the version they were stored in) or false (upcast to the latest version, the default)", clip(v))).atField("stored")
	}
	return b, nil
}

// readContext is ctx, asking for stored versions when stored is set.
func readContext(ctx context.Context, stored bool) context.Context {
	if stored {
		return event.WithStoredVersions(ctx)
	}
	return ctx
}

// parseFilter parses the query of GET /v1/events. A problem has status
// 400. The input is untrusted: this never panics.
func parseFilter(rawQuery string) (store.Filter, *Problem) {
	q, p := parseQuery(rawQuery, eventsParams, []string{"type"})
	if p != nil {
		return store.Filter{}, p
	}
	return filterFrom(q)
}

// readFrom reads what a read of events takes from q: its filter (the
// parameters of eventsParams) and the stored parameter.
func readFrom(q query) (f store.Filter, stored bool, p *Problem) {
	if f, p = filterFrom(q); p != nil {
		return f, false, p
	}
	stored, p = storedFrom(q)
	return f, stored, p
}

// filterFrom reads the filter parameters of q (those of eventsParams).
func filterFrom(q query) (store.Filter, *Problem) {
	var f store.Filter
	var p *Problem
	var err error
	if f.After, err = store.ParseCursor(q.get("after")); err != nil {
		return f, newProblem(400, ProblemInvalidParameter,
			fmt.Sprintf("after %s is not a cursor this server issued; pass the \"next\" of a previous page, or leave after out to start at the beginning", clip(q.get("after")))).atField("after")
	}
	if f.Limit, p = parseLimit(q.get("limit")); p != nil {
		return f, p
	}
	for _, v := range q.values["type"] {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" || slices.Contains(f.Types, t) {
				continue
			}
			if event.CheckTypeName(t) != nil {
				return f, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("type %s is not an event type name, such as quiz.submitted", clip(t))).atField("type")
			}
			f.Types = append(f.Types, t)
		}
	}
	if len(f.Types) > maxTypes {
		return f, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("%d types are given; filter on at most %d", len(f.Types), maxTypes)).atField("type")
	}
	if v := q.get("correlation_id"); v != "" {
		if f.CorrelationID, err = uuid.Parse(v); err != nil {
			return f, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("correlation_id %s is not a UUID", clip(v))).atField("correlation_id")
		}
	}
	if f.Subject, p = parseSubject(q.get("subject"), "subject"); p != nil {
		return f, p
	}
	if f.Since, p = parseTime(q.get("since"), "since"); p != nil {
		return f, p
	}
	if f.Until, p = parseTime(q.get("until"), "until"); p != nil {
		return f, p
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, newProblem(400, ProblemInvalidParameter, "until must be later than since (since is inclusive, until exclusive)").atField("until")
	}
	if f.FromPosition, p = parsePosition(q.get("from_position"), "from_position"); p != nil {
		return f, p
	}
	if f.ToPosition, p = parsePosition(q.get("to_position"), "to_position"); p != nil {
		return f, p
	}
	if f.FromPosition > 0 && f.ToPosition > 0 && f.ToPosition < f.FromPosition {
		return f, newProblem(400, ProblemInvalidParameter, "to_position must not be below from_position (both are inclusive)").atField("to_position")
	}
	return f, nil
}

// parsePosition parses a global position bound; 0 (or absent) means none.
func parsePosition(v, name string) (int64, *Problem) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, newProblem(400, ProblemInvalidParameter,
			fmt.Sprintf("%s %s must be a global position: a whole number from 0 (0: no bound)", name, clip(v))).atField(name)
	}
	return n, nil
}

// streamQuery is the query of GET /v1/streams/{subject}.
type streamQuery struct {
	From   int64
	Limit  int
	Stored bool
}

// parseStreamQuery parses the query of GET /v1/streams/{subject}. A
// problem has status 400.
func parseStreamQuery(rawQuery string) (streamQuery, *Problem) {
	sq := streamQuery{From: 1}
	q, p := parseQuery(rawQuery, []string{"from", "limit", "stored"}, nil)
	if p != nil {
		return sq, p
	}
	if sq.Stored, p = storedFrom(q); p != nil {
		return sq, p
	}
	if v := q.get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return sq, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("from %s must be a stream version: a whole number from 1", clip(v))).atField("from")
		}
		sq.From = n
	}
	sq.Limit, p = parseLimit(q.get("limit"))
	return sq, p
}

// parseLimit parses a page size. A limit out of range is an error rather
// than clamped, so that a client never mistakes a short page for the end.
func parseLimit(v string) (int, *Problem) {
	if v == "" {
		return store.DefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxLimit {
		return 0, newProblem(400, ProblemInvalidParameter,
			fmt.Sprintf("limit %s must be a whole number from 1 to %d (default %d)", clip(v), store.MaxLimit, store.DefaultLimit)).atField("limit")
	}
	return n, nil
}

func parseTime(v, name string) (time.Time, *Problem) {
	if v == "" {
		return time.Time{}, nil
	}
	// The CLI's parser: what --since takes, since= takes.
	t, err := store.ParseTime(v, time.Now())
	if err != nil {
		return time.Time{}, newProblem(400, ProblemInvalidParameter, fmt.Sprintf("%s: %v", name, err)).atField(name)
	}
	return t, nil
}

func parseSubject(v, name string) (string, *Problem) {
	if len(v) > store.MaxSubjectLen {
		return "", newProblem(400, ProblemInvalidParameter, fmt.Sprintf("%s is %d bytes long; the limit is %d", name, len(v), store.MaxSubjectLen)).atField(name)
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return "", newProblem(400, ProblemInvalidParameter, name+" must be UTF-8 text without NUL characters").atField(name)
	}
	return v, nil
}
