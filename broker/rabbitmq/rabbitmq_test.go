package rabbitmq_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/brokertest"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

// upstream is the shared server's host:port, for fault proxies.
func upstream(t testing.TB) string {
	u, err := url.Parse(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// open connects to urls, closing the broker when the test ends.
// The test's logger unless logger is given.
func open(t testing.TB, urls string, logger ...*slog.Logger) *rabbitmq.Broker {
	t.Helper()
	cfg := rabbitmq.Config{Logger: testLogger(t), ReconnectBackoffMin: 10 * time.Millisecond, ReconnectBackoffMax: 200 * time.Millisecond}
	for _, l := range logger {
		cfg.Logger = l
	}
	b, err := rabbitmq.Open(testenv.Context(t, 30*time.Second), urls, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	brokertest.Run(t, brokertest.Harness{
		New: func(t *testing.T) broker.Broker { return open(t, testenv.AMQPURL()) },
		NewFaulty: func(t *testing.T) (broker.Broker, brokertest.Faults) {
			proxy := testenv.NewFaultProxy(t, upstream(t))
			return open(t, testenv.WithHost(testenv.AMQPURL(), proxy.Addr())), proxy
		},
	})
}

const secret = "s3cr3t-pw"

func TestOpenUnreachableSaysWhereAndHidesThePassword(t *testing.T) {
	_, err := rabbitmq.Open(context.Background(), "amqp://guest:"+secret+"@127.0.0.1:1/", rabbitmq.Config{})
	if err == nil {
		t.Fatal("Open succeeded on a closed port")
	}
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("error %v does not wrap broker.ErrUnavailable", err)
	}
	want := "rabbitmq: cannot reach amqp://guest@127.0.0.1:1/ (connection refused): check that RabbitMQ is running and EVENTBUS_AMQP_URL"
	if err.Error() != want {
		t.Fatalf("error:\n  %v\nwant:\n  %s", err, want)
	}
}

func TestOpenErrorsNeverShowThePassword(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	good, err := url.Parse(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	wrongPassword := *good
	wrongPassword.User = url.UserPassword(good.User.Username(), secret)
	tests := []struct {
		name, urls, want string
	}{
		{"wrong password", wrongPassword.String(), "check the user and password"},
		{"bad port", "amqp://guest:" + secret + "@127.0.0.1:notaport/", "is not valid"},
		{"bad scheme", "http://guest:" + secret + "@127.0.0.1:5672/", "is not valid"},
		{"several nodes", "amqp://guest:" + secret + "@127.0.0.1:1/, amqp://u:" + secret + "@127.0.0.1:2/", "amqp://u@127.0.0.1:2/ (connection refused)"},
		{"none", " , ", "no AMQP URL given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rabbitmq.Open(context.Background(), tt.urls, rabbitmq.Config{})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, broker.ErrUnavailable) {
				t.Errorf("error %v does not wrap broker.ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

// TestOpenHidesSpecialPasswords: passwords that hold the characters URLs
// give a meaning to, as they are and percent-encoded, in one URL and in
// lists, show in no part in Open's error or its logs.
func TestOpenHidesSpecialPasswords(t *testing.T) {
	for _, pw := range testenv.SpecialPasswords(false) {
		for _, urls := range []string{
			"amqp://guest:" + pw + "@127.0.0.1:1/",
			"amqp://guest:" + pw + "@127.0.0.1:1/,amqp://guest:" + pw + "@127.0.0.1:2/vhost",
		} {
			logs := &syncBuffer{}
			_, err := rabbitmq.Open(context.Background(), urls, rabbitmq.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err == nil {
				t.Fatalf("%s: Open succeeded", urls)
			}
			if part, shows := testenv.ShowsSecret(err.Error() + "\n" + logs.String()); shows {
				t.Errorf("%s: %q shows: %v\n%s", urls, part, err, logs.String())
			}
		}
	}
}

func TestOpenSkipsAnUnreachableNode(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	b := open(t, "amqp://guest:guest@127.0.0.1:1/,"+testenv.AMQPURL())
	defer b.Close()
	if err := b.Ping(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReconnectMovesToTheNextNode(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	nodeA := testenv.NewFaultProxy(t, upstream(t))
	nodeB := testenv.NewFaultProxy(t, upstream(t))
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	urls := testenv.WithHost(testenv.AMQPURL(), nodeA.Addr()) + "," + testenv.WithHost(testenv.AMQPURL(), nodeB.Addr())
	b := open(t, urls, logger)
	defer b.Close()
	ctx := testenv.Context(t, 30*time.Second)
	q := testenv.Name("rmq_node")
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: q}); err != nil {
		t.Fatal(err)
	}
	defer b.DeleteQueue(context.Background(), q)

	nodeA.Down() // node A dies for good
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping after node A died: %v", err)
	}
	if _, err := b.InspectQueue(ctx, q); err != nil {
		t.Fatalf("InspectQueue after node A died: %v", err)
	}
	if got := b.Reconnects(); got != 1 {
		t.Fatalf("Reconnects() = %d, want 1", got)
	}
	text := logs.String()
	if !strings.Contains(text, "reconnected") || !strings.Contains(text, nodeB.Addr()) {
		t.Fatalf("the log does not tell of the reconnection to node B:\n%s", text)
	}
	u, _ := url.Parse(testenv.AMQPURL())
	if pw, ok := u.User.Password(); ok && strings.Contains(text, ":"+pw+"@") {
		t.Fatalf("the log shows a password:\n%s", text)
	}
}

func TestQueuesAreQuorumQueues(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	b := open(t, testenv.AMQPURL())
	defer b.Close()
	ctx := testenv.Context(t, 30*time.Second)
	dlq := testenv.Name("rmq_dlq")
	spec := broker.QueueSpec{Name: testenv.Name("rmq_args"), DeadLetterQueue: dlq, MessageTTL: 1500 * time.Millisecond}
	if err := b.DeclareQueue(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer b.DeleteQueue(context.Background(), spec.Name)

	// Declaring with other arguments fails on the server, so these two
	// declarations tell which arguments the queue has.
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	declare := func(args amqp.Table) error {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		_, err = ch.QueueDeclare(spec.Name, true, false, false, false, args)
		return err
	}
	if err := declare(rabbitmq.QueueArgs(spec)); err != nil {
		t.Fatalf("declaring with QueueArgs: %v", err)
	}
	want := amqp.Table{
		"x-queue-type": "quorum", "x-message-ttl": int64(1500),
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq,
		"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
	}
	for k, v := range want {
		if got := rabbitmq.QueueArgs(spec)[k]; got != v {
			t.Errorf("QueueArgs[%s] = %v, want %v", k, got, v)
		}
	}
	classic := rabbitmq.QueueArgs(spec)
	classic["x-queue-type"] = "classic"
	var amqpErr *amqp.Error
	if err := declare(classic); !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed {
		t.Fatalf("declaring the queue as classic: %v, want PRECONDITION_FAILED", err)
	}
}

func TestHeadersOfEveryIntegerWidthComeBackAsInt64(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	b := open(t, testenv.AMQPURL())
	defer b.Close()
	ctx := testenv.Context(t, 30*time.Second)
	q := testenv.Name("rmq_ints")
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: q}); err != nil {
		t.Fatal(err)
	}
	defer b.DeleteQueue(context.Background(), q)
	p, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	headers := map[string]any{
		"i8": int8(-8), "u8": uint8(8), "i16": int16(-16), "u16": uint16(16), "i32": int32(-32),
		"u32": uint32(32), "i": int(-64), "u": uint(64), "u64": uint64(1 << 40),
		"nested": map[string]any{"n": int32(5)}, "list": []any{int16(1), "two"},
	}
	c, err := p.Publish(ctx, broker.NamelessExchange, q, broker.Message{MessageID: "ints", Headers: headers, Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if !c.Acked() {
		t.Fatal("not acked")
	}
	if _, err := p.Publish(ctx, broker.NamelessExchange, q, broker.Message{Headers: map[string]any{"bad": struct{}{}}}); err == nil {
		t.Fatal("Publish accepted a header AMQP cannot carry")
	}
	br, err := b.Browse(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	d, ok, err := br.Next(ctx)
	if err != nil || !ok {
		t.Fatalf("Next = %v, %v", ok, err)
	}
	want := map[string]int64{"i8": -8, "u8": 8, "i16": -16, "u16": 16, "i32": -32, "u32": 32, "i": -64, "u": 64, "u64": 1 << 40}
	for k, w := range want {
		if got, ok := d.Headers[k].(int64); !ok || got != w {
			t.Errorf("header %s = %v (%T), want int64 %d", k, d.Headers[k], d.Headers[k], w)
		}
	}
	nested, ok := d.Headers["nested"].(map[string]any)
	if !ok || nested["n"] != int64(5) {
		t.Errorf("nested header = %#v", d.Headers["nested"])
	}
	list, ok := d.Headers["list"].([]any)
	if !ok || len(list) != 2 || list[0] != int64(1) || list[1] != "two" {
		t.Errorf("list header = %#v", d.Headers["list"])
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

// TestQueueOnlyPublisherSendsNoBucketKey: through the default exchange, the
// CC key of a message's bucket names one more queue, "b~<bucket>.<queue>",
// which RabbitMQ routes a copy to when it exists; a queue-only publisher
// does not send the key (it is what its option saves), so such a queue gets
// nothing from it.
func TestQueueOnlyPublisherSendsNoBucketKey(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	b := open(t, testenv.AMQPURL())
	defer b.Close()
	ctx := testenv.Context(t, 30*time.Second)
	q := testenv.Name("rmq_direct")
	shadow := "b~5." + q // the bucket key of bucket 5 (see bucketKey)
	for _, name := range []string{q, shadow} {
		if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: name}); err != nil {
			t.Fatal(err)
		}
		defer b.DeleteQueue(context.Background(), name)
	}
	publish := func(opts broker.PublisherOptions, id string) {
		t.Helper()
		p, err := b.NewPublisher(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		m := broker.Message{MessageID: id, Body: []byte(id), Headers: map[string]any{broker.HeaderBucket: "5"}}
		testenv.PublishAll(t, ctx, p, broker.NamelessExchange, q, m)
	}
	publish(broker.PublisherOptions{QueueOnly: true}, "queue-only")
	publish(broker.PublisherOptions{}, "plain")
	// Both are confirmed: each is in every queue it was routed to.
	if got := testenv.DrainIDs(t, b, q); !slices.Equal(got, []string{"queue-only", "plain"}) {
		t.Errorf("%s holds %v, want [queue-only plain]", q, got)
	}
	if got := testenv.DrainIDs(t, b, shadow); !slices.Equal(got, []string{"plain"}) {
		t.Errorf("%s holds %v, want [plain]: only the plain publisher sends the bucket key", shadow, got)
	}
}
