package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
)

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to date",
		Long: `migrate applies the schema migrations this build knows and has not yet
applied. It is safe to run from several places at once: one migrates, the
others wait. Migrations are versioned and never edited once released.`,
		Example: `  EVENTBUS_DATABASE_URL=postgres://eventbus:secret@db:5432/eventbus eventbus migrate`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := a.open(cmd, service.Config{Migrate: true, StoreOnly: true})
			if err != nil {
				return err
			}
			defer svc.Close()
			cur, latest, err := svc.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "schema at version %d (this build's newest: %d)\n", cur, latest)
			return nil
		},
	}
}

func (a *app) publishCmd() *cobra.Command {
	var (
		subject, id, correlationID, causationID, source, dataSchema string
		expected                                                    int64
	)
	cmd := &cobra.Command{
		Use:   "publish TYPE JSON",
		Short: "Record one event",
		Long: `publish records one event in the store; the relay delivers it. JSON is the
event's data, or - to read it from standard input. The event is checked
against its type: an unknown type or data that does not fit is refused, and
nothing is stored. Publishing again with the same --id stores nothing new.`,
		Example: `  eventbus publish quiz.submitted '{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}' --subject quiz-1
  echo '{"badge_id":"...","recipient_id":"...","reason":"90+"}' | eventbus publish badge.awarded -`,
		Args: exactArgs(2, "TYPE", "JSON"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data := []byte(args[1])
			if args[1] == "-" {
				var err error
				if data, err = io.ReadAll(io.LimitReader(os.Stdin, eventbus.DefaultMaxDataBytes+1)); err != nil {
					return fmt.Errorf("read the event data from standard input: %w", err)
				}
			}
			d := event.Draft{Type: args[0], Data: data, Subject: subject, Source: source, DataSchema: dataSchema}
			for flag, dst := range map[string]*uuid.UUID{"id": &d.ID, "correlation-id": &d.CorrelationID, "causation-id": &d.CausationID} {
				raw, _ := cmd.Flags().GetString(flag)
				if raw == "" {
					continue
				}
				v, err := uuid.Parse(raw)
				if err != nil {
					return usagef(cmd, "--%s %q is not a UUID", flag, raw)
				}
				*dst = v
			}
			if cmd.Flags().Changed("expected-version") {
				d.ExpectedVersion = event.Expect(expected)
			}
			svc, err := a.open(cmd, service.Config{StoreOnly: true})
			if err != nil {
				return err
			}
			defer svc.Close()
			res, err := svc.Bus.Append(cmd.Context(), []event.Draft{d})
			if err != nil {
				return publishError(err, d.Type, svc.Bus.Registry())
			}
			b, err := event.Encode(res[0].Envelope)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\n", b)
			if res[0].Duplicate {
				fmt.Fprintf(a.stderr, "already stored at position %d: nothing new was written\n", res[0].Envelope.Position)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the stream the event belongs to")
	cmd.Flags().StringVar(&id, "id", "", "the event's ID (UUID); default a new UUIDv7. Reusing one makes publishing idempotent")
	cmd.Flags().StringVar(&correlationID, "correlation-id", "", "correlation ID (UUID); default a new one")
	cmd.Flags().StringVar(&causationID, "causation-id", "", "ID of the event that caused this one")
	cmd.Flags().StringVar(&source, "source", "", "the producer; default eventbus-cli")
	cmd.Flags().Int64Var(&expected, "expected-version", 0, "fail unless the stream is at this version (0: it must not exist)")
	cmd.Flags().StringVar(&dataSchema, "dataschema", "", "the version of the data, urn:edupulse:schema:TYPE:N (see GET /v1/schemas); default the latest")
	return cmd
}

func (a *app) eventsCmd() *cobra.Command {
	var (
		f      filterFlags
		after  string
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Query stored events, in commit order",
		Long: `events prints one page of stored events in commit order, as a table, or as
CloudEvents JSON (one per line) with --json. When more events follow, it
prints the --after token of the next page on standard error.`,
		Example: `  eventbus events --type quiz.submitted --since 24h
  eventbus events --correlation-id 0190d1e2-0000-7000-8000-000000000001 --json
  eventbus events --subject quiz-42 --limit 20 --after AQID
  EVENTBUS_API_TOKEN=... eventbus events --server http://127.0.0.1:8080 --type quiz.submitted`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter(cmd)
			if err != nil {
				return err
			}
			if filter.After, err = parseCursor(cmd, "after", after); err != nil {
				return err
			}
			if limit < 1 || limit > store.MaxLimit {
				return usagef(cmd, "--limit %d: use 1 to %d", limit, store.MaxLimit)
			}
			filter.Limit = limit
			events, next, err := a.readPage(cmd, filter)
			if err != nil {
				return err
			}
			if err := printEvents(a.stdout, events, asJSON, true); err != nil {
				return err
			}
			if len(events) == limit {
				fmt.Fprintf(a.stderr, "more events follow: --after %s\n", next)
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	a.addServerFlag(cmd, false, "read")
	cmd.Flags().StringVar(&after, "after", "", "the page after this cursor token")
	cmd.Flags().IntVar(&limit, "limit", 50, "events per page")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print CloudEvents JSON, one per line")
	addStoredFlag(cmd)
	return cmd
}

func (a *app) tailCmd() *cobra.Command {
	var (
		f      filterFlags
		from   string
		asJSON bool
		poll   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow events as they commit, in commit order",
		Long: `tail prints events as they commit, in commit order, until Ctrl-C. It never
skips an event whose transaction commits late. By default it starts with
what commits from now on; --from starts at a global position or a time.`,
		Example: `  eventbus tail
  eventbus tail --type badge.awarded --json
  eventbus tail --from 120000
  eventbus tail --from 2026-11-27T08:00:00Z`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter(cmd)
			if err != nil {
				return err
			}
			if poll <= 0 {
				return usagef(cmd, "--poll must be positive")
			}
			var pos int64
			var at time.Time
			if from != "" {
				if pos, at, err = positionOrTime(from); err != nil {
					return usagef(cmd, "--from: %v", err)
				}
			}
			// SIGTERM and Ctrl-C are how tail normally ends, wherever they
			// find it: an error that comes after them is the stop itself.
			ctx := cmd.Context()
			stopped := func(err error) error {
				var usage *usageError
				if ctx.Err() != nil && !errors.As(err, &usage) {
					return nil
				}
				return err
			}
			if c, err := a.remote(cmd); err != nil || c != nil {
				if err != nil {
					return err
				}
				return stopped(a.tailRemote(ctx, c, filter, from != "", pos, at, asJSON, poll))
			}
			svc, err := a.openReadOnly(cmd)
			if err != nil {
				return stopped(err)
			}
			defer svc.Close()
			if filter.After, err = tailStart(ctx, svc.Store, from != "", pos, at); err != nil {
				return stopped(err)
			}
			header := !asJSON
			for ctx.Err() == nil {
				filter.Limit = store.MaxLimit
				page, err := svc.Store.Read(ctx, filter)
				if err != nil {
					return stopped(err)
				}
				if len(page.Events) > 0 {
					if err := printEvents(a.stdout, page.Events, asJSON, header); err != nil {
						return err
					}
					header = false
					filter.After = page.Next
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(poll):
				}
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	a.addServerFlag(cmd, false, "read")
	cmd.Flags().StringVar(&from, "from", "", "start at this global position, or at this time (RFC 3339 or a duration ago); default: now")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print CloudEvents JSON, one per line")
	cmd.Flags().DurationVar(&poll, "poll", 200*time.Millisecond, "how often to look for new events when idle")
	addStoredFlag(cmd)
	return cmd
}

// readPage reads one page of events, from the server of --server or from
// the store, and returns the cursor of the next page.
func (a *app) readPage(cmd *cobra.Command, filter store.Filter) ([]event.Envelope, string, error) {
	c, err := a.remote(cmd)
	if err != nil {
		return nil, "", err
	}
	if c != nil {
		page, err := c.Events(cmd.Context(), clientFilter(filter))
		return page.Events, page.Next, remoteError(c, err)
	}
	svc, err := a.openReadOnly(cmd)
	if err != nil {
		return nil, "", err
	}
	defer svc.Close()
	page, err := svc.Store.Read(cmd.Context(), filter)
	return page.Events, page.Next.String(), err
}

// tailRemote is tail through a server: from the first event at or after a
// position or a time (when from), else from the end, it follows the
// events the filter selects until ctx ends.
func (a *app) tailRemote(ctx context.Context, c *remoteServer, filter store.Filter, from bool, pos int64, at time.Time, asJSON bool, poll time.Duration) error {
	f := clientFilter(filter)
	header := !asJSON
	switch {
	case from:
		// The first event at or after the start, by the filter, then
		// everything after it in commit order, as tailStart does.
		first := f
		first.Limit, first.FromPosition = 1, max(pos, f.FromPosition)
		if !at.IsZero() {
			first.Since = at
		}
		page, err := c.Events(ctx, first)
		if err != nil {
			return remoteError(c, err)
		}
		if len(page.Events) == 0 {
			if f.After, err = c.End(ctx, f); err != nil {
				return remoteError(c, err)
			}
			break
		}
		if err := printEvents(a.stdout, page.Events, asJSON, header); err != nil {
			return err
		}
		header, f.After = false, page.Next
	default:
		var err error
		if f.After, err = c.End(ctx, f); err != nil {
			return remoteError(c, err)
		}
	}
	// The live stream from there: each event as it comes, misses and
	// repeats none across reconnections (client.Tail).
	for e, err := range c.Tail(ctx, f, poll) {
		if err != nil {
			return remoteError(c, err)
		}
		if err := printEvents(a.stdout, []event.Envelope{e}, asJSON, header); err != nil {
			return err
		}
		header = false
	}
	return nil
}

// tailStart returns the cursor tail starts after: just before the first
// event, in commit order, at or after a position or a time; or, without
// them, the newest event now.
func tailStart(ctx context.Context, s store.Store, from bool, pos int64, at time.Time) (store.Cursor, error) {
	if !from {
		st, err := s.Stats(ctx)
		return st.Head, err
	}
	f := store.Filter{Limit: 1, FromPosition: pos, Since: at}
	page, err := s.Read(ctx, f)
	if err != nil || len(page.Events) == 0 {
		// Nothing there yet: follow from the newest event.
		st, statsErr := s.Stats(ctx)
		if err == nil {
			err = statsErr
		}
		return st.Head, err
	}
	first := store.CursorOf(page.Events[0])
	// The cursor just before first: the same commit-order key, one position
	// lower. Cursors order by key, then position.
	first.Position--
	return first, nil
}

// printEvents writes events as a table (with a header row when header is
// set) or as CloudEvents JSON lines.
func printEvents(w io.Writer, events []event.Envelope, asJSON, header bool) error {
	if asJSON {
		buf := make([]byte, 0, 1024)
		for _, e := range events {
			var err error
			if buf, err = e.AppendCloudEvent(buf[:0]); err != nil {
				return err
			}
			buf = append(buf, '\n')
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "POSITION\tOCCURRED\tTYPE\tSUBJECT\tVERSION\tID\tCORRELATION")
	}
	for _, e := range events {
		version := ""
		if e.Subject != "" {
			version = strconv.FormatInt(e.StreamVersion, 10)
		}
		typ := e.Type
		if e.Erased {
			// Its personal fields are null: say why, rather than show blanks.
			typ += " [erased]"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Position, e.OccurredAt.Format(time.RFC3339Nano),
			typ, orDash(e.Subject), orDash(version), e.ID, e.CorrelationID)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printJSON writes v as indented JSON. Lists are lists even when empty:
// [] where encoding/json would write null for a nil slice, which scripts
// that iterate over the answer trip on.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if v == nil {
		return enc.Encode(v)
	}
	copied := reflect.New(reflect.TypeOf(v)).Elem()
	copied.Set(reflect.ValueOf(v))
	emptyLists(copied, 0)
	return enc.Encode(copied.Interface())
}

// emptyLists replaces the nil slices reachable from v through exported
// fields, elements and pointers with empty ones. Byte slices (raw JSON,
// bodies) keep their own encoding.
func emptyLists(v reflect.Value, depth int) {
	if depth > 16 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			emptyLists(v.Elem(), depth+1)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				emptyLists(v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		if v.IsNil() {
			if v.CanSet() {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			emptyLists(v.Index(i), depth+1)
		}
	}
}

// publishError says why publish stored nothing, and what to do.
func publishError(err error, typ string, reg *event.Registry) error {
	// The bus's own prefixes say nothing to someone who published one event.
	msg := err.Error()
	for _, prefix := range []string{"eventbus: dispatch: event 0: ", "eventbus: dispatch 1 events: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	switch {
	case errors.Is(err, event.ErrUnknownType):
		return fmt.Errorf("nothing stored: %q is not an event type this build knows; use one of %s", typ, strings.Join(reg.Types(), ", "))
	case errors.Is(err, event.ErrTooLarge):
		return fmt.Errorf("nothing stored: %s; send smaller data, or a reference to it", msg)
	case errors.Is(err, event.ErrInvalid):
		return fmt.Errorf("nothing stored: %s; fix the data and publish again", msg)
	case errors.Is(err, store.ErrVersionConflict):
		return fmt.Errorf("nothing stored: %s; read the stream with 'eventbus events --subject ...' and give its version to --expected-version", msg)
	}
	return err
}
