package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store"
)

// TestParkedCommands: 'parked list' shows a parked event (table and JSON),
// 'status' counts it and exits 1, 'parked retry' exits 1 while no relay acts
// on it, and with 'serve --relay-only' running publishes it and exits 0.
// The event was parked for a cause that has gone, as after an operator
// raised the broker's limit.
func TestParkedCommands(t *testing.T) {
	ctx := context.Background()
	s := newServers(t, ctx)
	q := s.queue(t, ctx, "#")
	ids := s.appendQuizzes(t, ctx, 3)
	parkedID := uuid.MustParse(ids[1])
	env, err := s.store.Get(ctx, parkedID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.Park(ctx, store.ParkedEvent{Partition: store.Partition{Relay: relay.DefaultName}, EventID: env.ID,
		Position: env.Position, Type: env.Type, Reason: relay.ReasonRefused + "message size 5350 is larger than configured max size 4096", Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	r := mustRunCLI(t, dir, s.env, "parked", "list")
	if !strings.Contains(r.stdout, "EVENT ID") || !strings.Contains(r.stdout, ids[1]) || !strings.Contains(r.stdout, "larger than configured max size") {
		t.Fatalf("parked list: %v", r)
	}
	r = mustRunCLI(t, dir, s.env, "parked", "list", "--json")
	var list []wire.Parked
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].EventID != parkedID || list[0].Attempts != 1 {
		t.Fatalf("parked list --json: %v (%v)", r, err)
	}
	r = runCLI(t, dir, s.env, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "parked") || !strings.Contains(r.stderr, "1 parked events") {
		t.Fatalf("status with a parked event: want exit 1 naming it; %v", r)
	}

	// No relay runs: the request stays unanswered.
	r = runCLI(t, dir, s.env, "parked", "retry", ids[1], "--wait", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "no relay acted on the retry") {
		t.Fatalf("parked retry without a relay: want exit 1 saying no relay acted; %v", r)
	}

	// The request stands until a relay acts on it; withdraw it (parking
	// again clears it), so that the retry below is what publishes the event.
	parked := store.ParkedEvent{Partition: store.Partition{Relay: relay.DefaultName}, EventID: env.ID,
		Position: env.Position, Type: env.Type, Reason: relay.ReasonRefused + "still too large"}
	if err := s.store.Park(ctx, parked); err != nil {
		t.Fatal(err)
	}
	start(t, eventbusBin, dir, s.env, "serve", "--relay-only")
	waitQueue(t, s, q, 2) // the events around the parked one flow
	r = mustRunCLI(t, dir, s.env, "parked", "retry", "--all")
	if !strings.Contains(r.stdout, "published 1; 0 still parked") {
		t.Fatalf("parked retry --all: %v", r)
	}
	waitQueue(t, s, q, 3)
	if r := mustRunCLI(t, dir, s.env, "parked", "list", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("parked list --json after the retry: %v; want []", r)
	}
}

// waitQueue waits until queue q holds n distinct events.
func waitQueue(t *testing.T, s *servers, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := s.messages(t, context.Background(), q)
		if len(distinctStrings(got)) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue holds %v; want %d events", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func distinctStrings(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// TestParkedUsageErrors: the parked commands' mistakes exit 2 and say what
// was wrong.
func TestParkedUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"parked", "retry"}, "give either --all or one or more event IDs"},
		{[]string{"parked", "retry", "--all", uuid.NewString()}, "give either --all or one or more event IDs"},
		{[]string{"parked", "retry", "nope"}, `"nope" is not an event ID`},
		{[]string{"parked", "retry", "--all", "--wait", "-1s"}, "--wait must not be negative"},
		{[]string{"parked", "list", "extra"}, "parked list takes no arguments"},
		{[]string{"parked", "frob"}, `unknown parked command "frob"`},
	} {
		r := runCLI(t, dir, nil, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("eventbus %s: want exit 2 with %q; %v", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	for _, c := range []string{"parked", "parked list", "parked retry"} {
		r := runCLI(t, dir, nil, append(strings.Fields(c), "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("eventbus %s --help: want exit 0 with examples; %v", c, r)
		}
	}
}
