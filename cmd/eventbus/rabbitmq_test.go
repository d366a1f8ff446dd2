package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

// servers is a PostgreSQL schema and a RabbitMQ exchange of the test's own,
// with the environment that points eventbus at them.
type servers struct {
	env      []string
	store    *postgres.Store
	broker   *rabbitmq.Broker
	exchange string
}

func newServers(t *testing.T, ctx context.Context) *servers {
	t.Helper()
	amqp := testenv.AMQPURL()
	testenv.Need(t, "RabbitMQ", amqp)
	pg := testenv.PostgresSchema(t)
	s := &servers{exchange: testenv.Name("cli_x")}
	s.env = []string{"EVENTBUS_DATABASE_URL=" + pg, "EVENTBUS_AMQP_URL=" + amqp, "EVENTBUS_EXCHANGE=" + s.exchange}
	// The schema through the CLI, as an operator would.
	if r := mustRunCLI(t, t.TempDir(), s.env, "migrate"); !strings.Contains(r.stdout, "schema at version") {
		t.Fatalf("migrate: %v", r)
	}
	var err error
	if s.store, err = postgres.Open(ctx, pg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.store.Close() })
	if s.broker, err = rabbitmq.Open(ctx, amqp, rabbitmq.Config{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.broker.DeleteExchange(context.Background(), s.exchange)
		s.broker.Close()
	})
	if err := s.broker.DeclareExchange(ctx, s.exchange); err != nil {
		t.Fatal(err)
	}
	return s
}

// queue declares a queue of the test's own, bound to the exchange with
// patterns, and deletes it when the test ends.
func (s *servers) queue(t *testing.T, ctx context.Context, patterns ...string) string {
	t.Helper()
	name := testenv.Name("cli_q")
	spec := broker.QueueSpec{Name: name}
	for _, p := range patterns {
		spec.Bindings = append(spec.Bindings, broker.Binding{Exchange: s.exchange, Pattern: p})
	}
	if err := s.broker.DeclareQueue(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.broker.DeleteQueue(context.Background(), name) })
	return name
}

// appendQuizzes stores n quiz events and returns their IDs.
func (s *servers) appendQuizzes(t *testing.T, ctx context.Context, n int) []string {
	t.Helper()
	bus := eventbus.New(s.store, eventbus.Config{Registry: edupulse.Registry(), Source: "cli-test"})
	var drafts []event.Draft
	for i := range n {
		d, err := eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: int32(i)})
		if err != nil {
			t.Fatal(err)
		}
		drafts = append(drafts, d)
	}
	res, err := bus.Append(ctx, drafts)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.Envelope.ID.String()
	}
	return ids
}

// messages takes every message of a queue, leaving them there, and returns
// their IDs and whether each carries the replay header.
func (s *servers) messages(t *testing.T, ctx context.Context, queue string) (ids []string, replayed int) {
	t.Helper()
	br, err := s.broker.Browse(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	for {
		d, ok, err := br.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ids, replayed
		}
		ids = append(ids, d.Message.MessageID)
		if d.Message.Header(broker.HeaderReplay) != "" {
			replayed++
		}
	}
}

// TestReplayOnRabbitMQ: replay plans with --dry-run and sends nothing;
// interrupted, it prints the --resume token; resumed, it sends the rest; and
// to the exchange it reaches the queues bound to the events' type.
func TestReplayOnRabbitMQ(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServers(t, ctx)
	dir := t.TempDir()
	const n = 300
	ids := s.appendQuizzes(t, ctx, n)
	q := s.queue(t, ctx)

	// Readers in commit order stop at the oldest transaction open on the
	// server, and other packages' tests share it: wait until ours show.
	var r result
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		r = mustRunCLI(t, dir, s.env, "replay", "--queue", q, "--dry-run", "--sample", "3", "--all")
		if !strings.HasPrefix(r.stdout, "would replay 0 events") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.HasPrefix(r.stdout, fmt.Sprintf("would replay %d events to queue %s\n", n, q)) ||
		strings.Count(r.stdout, "quiz.submitted") != 3 || !strings.Contains(r.stdout, ids[0]) {
		t.Fatalf("replay --dry-run: want the count and the first 3 events; %v", r)
	}
	if got, _ := s.messages(t, ctx, q); len(got) != 0 {
		t.Fatalf("the dry run sent %d messages", len(got))
	}

	// Slowly, so that it is still running when interrupted.
	cmd := exec.Command(eventbusBin, "replay", "--queue", q, "--rate", "200", "--all")
	cmd.Dir, cmd.Env = dir, append(baseEnv(), s.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for {
		if info, err := s.broker.InspectQueue(ctx, q); err == nil && info.Messages >= 20 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the replay sent nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("interrupted replay: %v, want exit 1\nstdout: %s\nstderr: %s", err, &stdout, &stderr)
	}
	if strings.Contains(stderr.String(), "\r") || strings.Contains(stderr.String(), "events/s") {
		t.Errorf("a progress bar on a stderr that is no terminal: %q", &stderr)
	}
	m := regexp.MustCompile(`stopped after (\d+) of (\d+) events; go on with: --resume (\S+)\n`).FindStringSubmatch(stderr.String())
	if m == nil || m[2] != fmt.Sprint(n) || !strings.HasSuffix(stderr.String(), "eventbus: interrupted\n") {
		t.Fatalf("interrupted replay: want the resume token and 'interrupted'; stderr: %s", &stderr)
	}
	var first int
	fmt.Sscan(m[1], &first)
	if first >= n {
		t.Fatalf("the replay sent all %d events before the interrupt", n)
	}

	r = mustRunCLI(t, dir, s.env, "replay", "--queue", q, "--resume", m[3])
	var rest int
	if _, err := fmt.Sscanf(r.stdout, "replayed %d events to queue "+q, &rest); err != nil || first+rest != n {
		t.Fatalf("resumed replay after %d events: want the other %d; %v", first, n-first, r)
	}
	got, replayed := s.messages(t, ctx, q)
	if len(got) != n || replayed != n || !sameSet(got, ids) {
		t.Fatalf("the queue holds %d messages (%d marked as replayed), want each of the %d events once", len(got), replayed, n)
	}

	// To the exchange: the queue bound to the type gets the events
	// selected, and only those.
	bound := s.queue(t, ctx, edupulse.TypeQuizSubmitted)
	r = mustRunCLI(t, dir, s.env, "replay", "--type", edupulse.TypeQuizSubmitted, "--to-position", "10")
	if !strings.HasPrefix(r.stdout, "replayed 10 events to exchange "+s.exchange) {
		t.Fatalf("replay to the exchange: %v", r)
	}
	if got, _ := s.messages(t, ctx, bound); len(got) != 10 || !sameSet(got, ids[:10]) {
		t.Fatalf("the bound queue got %d messages, want the first 10 events", len(got))
	}
}

func sameSet(a, b []string) bool {
	set := map[string]bool{}
	for _, x := range a {
		set[x] = true
	}
	if len(set) != len(b) {
		return false
	}
	for _, x := range b {
		if !set[x] {
			return false
		}
	}
	return true
}

// TestDeadLettersOnRabbitMQ: a consumer group gives up on events, which
// fills its dead-letter queue; dlq list shows them with the reason, dlq
// requeue moves them back to the group's queue.
func TestDeadLettersOnRabbitMQ(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServers(t, ctx)
	dir := t.TempDir()
	group := testenv.Name("cli_g")
	t.Cleanup(func() {
		for _, q := range []string{group, consume.DeadLetterQueue(group)} {
			_ = s.broker.DeleteQueue(context.Background(), q)
		}
	})
	c, err := consume.New(s.broker, consume.Config{Group: group, Exchange: s.exchange, MaxAttempts: 1, Logger: slog.New(slog.DiscardHandler)},
		consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error {
			return consume.Permanent(errors.New("quiz rejected by the test"))
		}))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	<-c.Ready()
	pub, err := s.broker.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		env := event.Envelope{ID: uuid.Must(uuid.NewV7()), Type: edupulse.TypeQuizSubmitted, Source: "cli-test",
			OccurredAt: time.Now().UTC().Truncate(event.TimePrecision), CorrelationID: uuid.New(),
			Data: []byte(quizJSON(i))}
		ids = append(ids, env.ID.String())
		msg, err := broker.EnvelopeMessage(env)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := pub.Publish(ctx, s.exchange, env.Type, msg)
		if err != nil {
			t.Fatal(err)
		}
		<-conf.Done()
	}
	pub.Close()
	for c.Stats().DeadLettered < 3 {
		if ctx.Err() != nil {
			t.Fatal("the consumer did not dead-letter the events")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stopped, so that requeued messages stay in the group's queue.
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The dlq commands need only the broker: they work while PostgreSQL
	// cannot be reached.
	noDB := []string{"EVENTBUS_DATABASE_URL=postgres://eventbus@127.0.0.1:1/eventbus?connect_timeout=1",
		"EVENTBUS_AMQP_URL=" + testenv.AMQPURL(), "EVENTBUS_EXCHANGE=" + s.exchange}
	r := mustRunCLI(t, dir, noDB, "dlq", "list", group)
	for _, id := range ids {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("dlq list lacks %s; %v", id, r)
		}
	}
	if strings.Count(r.stdout, "quiz rejected by the test") != 3 {
		t.Errorf("dlq list: want the reason of each; %v", r)
	}
	r = mustRunCLI(t, dir, noDB, "dlq", "requeue", group, "--id", ids[1])
	if strings.TrimSpace(r.stdout) != "requeued 1 dead letters to "+group {
		t.Fatalf("dlq requeue --id: %v", r)
	}
	r = mustRunCLI(t, dir, s.env, "dlq", "requeue", group, "--all")
	if strings.TrimSpace(r.stdout) != "requeued 2 dead letters to "+group {
		t.Fatalf("dlq requeue --all: %v", r)
	}
	back, _ := s.messages(t, ctx, group)
	dead, _ := s.messages(t, ctx, consume.DeadLetterQueue(group))
	if !sameSet(back, ids) || len(back) != 3 || len(dead) != 0 {
		t.Fatalf("after requeue: %d messages in the group's queue, %d dead letters; want the 3 events back and none dead", len(back), len(dead))
	}
	// No dead letters is an empty list, not null.
	if r = mustRunCLI(t, dir, noDB, "dlq", "list", group, "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("dlq list --json of an empty DLQ: want [], got %v", r)
	}
}
