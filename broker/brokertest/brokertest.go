// Package brokertest is the conformance suite for brokers. Every
// implementation of broker.Broker runs it from its own tests:
//
//	brokertest.Run(t, brokertest.Harness{New: ...})
//
// The suite is the contract of package broker in executable form: idempotent
// declarations, topic routing, properties and headers, publisher confirms,
// returns, per-queue order, prefetch, acknowledgements, dead-lettering and
// time to live, browsing, inspection, deletion, competing consumers and, for
// brokers that can be cut off, recovery from a lost connection.
//
// Every test uses queue and exchange names of its own (testenv.Name) and
// deletes them when it ends, so the suite can share a server with others.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
)

// Harness tells the suite how to make one broker implementation.
type Harness struct {
	// New returns a connected broker. The suite closes it when the test
	// ends.
	New func(t *testing.T) broker.Broker
	// NewFaulty, if set, returns a broker whose connection f can break as
	// the network would. The fault tests run only when it is set. The
	// suite closes the broker when the test ends.
	NewFaulty func(t *testing.T) (b broker.Broker, f Faults)
}

// Faults breaks a broker's connection.
type Faults interface {
	// Cut closes the broker's connections. New ones are accepted at once,
	// as after a network blip.
	Cut() error
	// Down closes the broker's connections and refuses new ones until Up.
	Down()
	Up() error
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"DeclareIsIdempotent", testDeclareIdempotent},
		{"TopicRouting", testTopicRouting},
		{"SeveralBindingsDeliverOnce", testSeveralBindingsDeliverOnce},
		{"NamelessExchangeRoutesByQueueName", testNamelessExchange},
		{"PropertiesAndHeadersRoundTrip", testRoundTrip},
		{"ConfirmsAreAcked", testConfirmsAcked},
		{"UnencodableMessageIsRefusedAlone", testRefusedAlone},
		{"MandatoryUnroutableIsReturned", testMandatoryReturn},
		{"PublishToMissingExchangeIsNotAcked", testPublishMissingExchange},
		{"QueueKeepsOrder", testFIFO},
		{"PrefetchLimitsUnackedInFlight", testPrefetch},
		{"NackRequeueRedelivers", testNackRequeue},
		{"NackWithoutRequeueDeadLetters", testNackDeadLetters},
		{"NackWithoutDeadLetterQueueDrops", testNackDrops},
		{"TTLDeadLettersAfterTTL", testTTL},
		{"BrowseLeavesMessagesUnlessAcked", testBrowse},
		{"InspectQueueCounts", testInspect},
		{"MissingQueueIsNotFound", testMissingQueue},
		{"DeleteQueue", testDeleteQueue},
		{"DeleteExchangeRemovesBindings", testDeleteExchange},
		{"ClosedSubscriptionEnds", testSubscriptionClose},
		{"CompetingConsumersShareTheWork", testCompetingConsumers},
		{"CloseEndsEverything", testBrokerClose},
		{"BucketBindingsRouteByBucket", testBucketRouting},
		{"DeadLetterExchangeRoutes", testDeadLetterExchange},
		{"QueueOnlyPublisherUsesTheDefaultExchangeOnly", testQueueOnlyPublisher},
		{"SingleActiveConsumerFailsOverInOrder", testSingleActiveConsumer},
		{"FaultSubscriptionEndsOnCut", testFaultSubscriptionEnds},
		{"FaultPublisherEndsOnCut", testFaultPublisherEnds},
		{"FaultRecoversTopologyAndResumes", testFaultRecovers},
		{"FaultCallsWaitForConnection", testFaultWaits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

// timeout bounds every wait of the suite; nothing should come near it.
const timeout = 30 * time.Second

func (h Harness) open(t *testing.T) broker.Broker {
	t.Helper()
	b := h.New(t)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func (h Harness) openFaulty(t *testing.T) (broker.Broker, Faults) {
	t.Helper()
	if h.NewFaulty == nil {
		t.Skip("the harness cannot break connections (Harness.NewFaulty is nil)")
	}
	b, f := h.NewFaulty(t)
	t.Cleanup(func() {
		_ = f.Up()
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, f
}

func ctxFor(t *testing.T) context.Context { return testenv.Context(t, timeout) }

// cleanupCtx is for deletions at the end of a test, after its context.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// exchange declares an exchange of the test's own, deleted at its end.
func exchange(t *testing.T, b broker.Broker) string {
	t.Helper()
	name := testenv.Name("bt_x")
	if err := b.DeclareExchange(ctxFor(t), name); err != nil {
		t.Fatalf("DeclareExchange(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := b.DeleteExchange(ctx, name); err != nil {
			t.Logf("DeleteExchange(%s): %v", name, err)
		}
	})
	return name
}

// queue declares spec under a name of the test's own (spec.Name is the
// prefix), deleted at its end, and returns the name.
func queue(t *testing.T, b broker.Broker, spec broker.QueueSpec) string {
	t.Helper()
	prefix := spec.Name
	if prefix == "" {
		prefix = "bt_q"
	}
	spec.Name = testenv.Name(prefix)
	if err := b.DeclareQueue(ctxFor(t), spec); err != nil {
		t.Fatalf("DeclareQueue(%s): %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := b.DeleteQueue(ctx, spec.Name); err != nil {
			t.Logf("DeleteQueue(%s): %v", spec.Name, err)
		}
	})
	return spec.Name
}

func publisher(t *testing.T, b broker.Broker, opts broker.PublisherOptions) broker.Publisher {
	t.Helper()
	p, err := b.NewPublisher(ctxFor(t), opts)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func subscribe(t *testing.T, b broker.Broker, queue string, prefetch int) broker.Subscription {
	t.Helper()
	s, err := b.Consume(ctxFor(t), queue, broker.ConsumeOptions{Prefetch: prefetch, Tag: testenv.Name("bt_c")})
	if err != nil {
		t.Fatalf("Consume(%s): %v", queue, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// msg returns a message whose id and body are id.
func msg(id string) broker.Message {
	return broker.Message{MessageID: id, ContentType: "text/plain", Body: []byte(id)}
}

// publishAll publishes the messages and waits for every confirm, which must
// be positive.
func publishAll(t *testing.T, p broker.Publisher, exchange, key string, msgs ...broker.Message) {
	t.Helper()
	testenv.PublishAll(t, ctxFor(t), p, exchange, key, msgs...)
}

// publishTo publishes messages with the given ids and waits for their
// confirms.
func publishTo(t *testing.T, b broker.Broker, exchange, key string, ids ...string) {
	t.Helper()
	p := publisher(t, b, broker.PublisherOptions{})
	msgs := make([]broker.Message, len(ids))
	for i, id := range ids {
		msgs[i] = msg(id)
	}
	publishAll(t, p, exchange, key, msgs...)
	if err := p.Close(); err != nil {
		t.Fatalf("Publisher.Close: %v", err)
	}
}

// receive takes n deliveries from s, failing the test if they do not come.
func receive(t *testing.T, s broker.Subscription, n int) []broker.Delivery {
	t.Helper()
	out := make([]broker.Delivery, 0, n)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case d, ok := <-s.Deliveries():
			if !ok {
				t.Fatalf("subscription ended after %d of %d deliveries: %v", len(out), n, s.Err())
			}
			out = append(out, d)
		case <-deadline.C:
			t.Fatalf("received %d of %d deliveries", len(out), n)
		}
	}
	return out
}

// nothingFor checks that s delivers nothing for d. It cannot prove that a
// message never comes; it catches the ones that come quickly.
func nothingFor(t *testing.T, s broker.Subscription, d time.Duration) {
	t.Helper()
	select {
	case dl, ok := <-s.Deliveries():
		if ok {
			t.Fatalf("unexpected delivery %s (routing key %q)", dl.MessageID, dl.RoutingKey)
		}
		t.Fatalf("subscription ended: %v", s.Err())
	case <-time.After(d):
	}
}

func ack(t *testing.T, ds ...broker.Delivery) {
	t.Helper()
	for _, d := range ds {
		if err := d.Ack(); err != nil {
			t.Fatalf("Ack(%s): %v", d.MessageID, err)
		}
	}
}

// eventually retries check until it returns nil, or fails the test with
// its last error. Brokers update counts asynchronously.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantMessages waits until q holds n ready messages.
func wantMessages(t *testing.T, b broker.Broker, q string, n int) {
	t.Helper()
	eventually(t, "queue "+q+" message count", func() error {
		info, err := b.InspectQueue(ctxFor(t), q)
		if err != nil {
			return err
		}
		if info.Messages != n {
			return fmt.Errorf("%d ready messages, want %d", info.Messages, n)
		}
		return nil
	})
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error = %v, want one wrapping %v", what, err, target)
	}
}

func ids(ds []broker.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.MessageID
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
