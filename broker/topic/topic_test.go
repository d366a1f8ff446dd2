package topic_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/broker/topic"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// semantics is RabbitMQ's topic matching, case by case. TestMatch checks
// the package against it and TestMatchAgainstRabbitMQ checks it against a
// real RabbitMQ, so the package is checked against the broker.
var semantics = []struct {
	pattern, key string
	matches      bool
}{
	// Words match literally; '*' is one word.
	{"a.b.c", "a.b.c", true},
	{"a.b.c", "a.b", false},
	{"a", "A", false},
	{"a.*.c", "a.b.c", true},
	{"a.*.c", "a.c", false},
	{"*", "a", true},
	{"*", "a.b", false},
	{"*.*", "a", false},
	{"*.*", "a.b", true},
	{"*.b", "a.b", true},
	// '#' is zero or more words.
	{"#", "a", true},
	{"#", "a.b.c", true},
	{"a.#", "a", true},
	{"a.#", "a.b.c", true},
	{"a.#", "b", false},
	{"a.#", "ab", false},
	{"#.a", "a", true},
	{"#.a", "b.a", true},
	{"#.a", "a.b", false},
	{"a.#.z", "a.z", true},
	{"a.#.z", "a.b.c.z", true},
	{"a.#.z", "a.b.c", false},
	{"#.#", "a.b", true},
	{"a.#.#.z", "a.z", true},
	{"#.b.#", "b", true},
	{"#.b.#", "a.b.c", true},
	{"#.b.#", "a.c", false},
	{"#.b.#.b", "b.x.b.y", false},
	{"#.b.#.b", "b.x.b.y.b", true},
	{"*.#", "a", true},
	{"#.*", "a.b", true},
	{"#.*.#", "a", true},
	// The empty key has no words: '#' matches it, '*' does not.
	{"#", "", true},
	{"#.#", "", true},
	{"*", "", false},
	{"*.#", "", false},
	{"#.*", "", false},
	{"", "", true},
	{"", "a", false},
	{"a", "", false},
	// An empty word is a word.
	{"a..b", "a..b", true},
	{"a.*.b", "a..b", true},
	{"a.b", "a..b", false},
	{"*.*", "a..b", false},
	{"*.*.*", "a..b", true},
	{"a.#.b", "a..b", true},
	{"a.*", "a.", true},
	{"a.#", "a.", true},
	{"a", "a.", false},
	{"#", ".", true},
	{"*", ".", false},
	{"*.*", ".", true},
	{".", "", false},
	{"", ".", false},
	{".", ".", true},
	{"#.", "a.", true},
	{"#.", "a", false},
	// '*' and '#' inside a word, or in a key, are plain characters.
	{"a*", "ab", false},
	{"a*", "a*", true},
	{"a#", "a", false},
	{"a#", "a#", true},
	{"*", "#", true},
	{"#", "*", true},
	{"a", "*", false},
	{"a.b", "a.#", false},
}

func TestMatch(t *testing.T) {
	for _, c := range semantics {
		if got := topic.Match(c.pattern, c.key); got != c.matches {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.key, got, c.matches)
		}
		if got := reference(c.pattern, c.key); got != c.matches {
			t.Errorf("reference(%q, %q) = %v, want %v: the reference is wrong", c.pattern, c.key, got, c.matches)
		}
	}
}

// TestMatchAgainstRabbitMQ checks the semantics table against a real
// RabbitMQ: for each case it binds a queue to a topic exchange of its own
// with the pattern, publishes a mandatory message with the key and waits
// for the publisher confirm. The broker returns a mandatory message that
// no queue takes before it confirms it, so a return means "no match"; the
// queue holding the message confirms it the other way.
func TestMatchAgainstRabbitMQ(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := testenv.Context(t, time.Minute)
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open a channel: %v", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("enable publisher confirms: %v", err)
	}
	// Returns arrive before the confirm of the same message, on this
	// buffered channel: one publish is in flight at a time.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))

	exchange, queue := testenv.Name("topic_semantics"), testenv.Name("topic_semantics")
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange: %v", err)
	}
	defer func() {
		if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
			t.Errorf("delete queue %s: %v", queue, err)
		}
		if err := ch.ExchangeDelete(exchange, false, false); err != nil {
			t.Errorf("delete exchange %s: %v", exchange, err)
		}
	}()
	if _, err := ch.QueueDeclare(queue, false, false, true, false, nil); err != nil {
		t.Fatalf("declare queue: %v", err)
	}

	for _, c := range semantics {
		routed, err := routedBy(ctx, ch, returns, exchange, queue, c.pattern, c.key)
		if err != nil {
			t.Fatalf("pattern %q, key %q: %v", c.pattern, c.key, err)
		}
		if routed != c.matches {
			t.Errorf("RabbitMQ: pattern %q and key %q match = %v; the table says %v", c.pattern, c.key, routed, c.matches)
		}
	}
}

// routedBy binds queue to exchange with pattern alone, publishes a
// mandatory message with key, and reports whether the broker routed it.
func routedBy(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, exchange, queue, pattern, key string) (bool, error) {
	if err := ch.QueueBind(queue, pattern, exchange, false, nil); err != nil {
		return false, err
	}
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{Body: []byte(key)})
	if err != nil {
		return false, err
	}
	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		return false, err
	}
	if !acked {
		return false, errors.New("the broker nacked the message")
	}
	returned := false
	select {
	case <-returns:
		returned = true
	default:
	}
	msg, got, err := ch.Get(queue, true)
	if err != nil {
		return false, err
	}
	if got && string(msg.Body) != key {
		return false, errors.New("the queue held a message of another case: " + string(msg.Body))
	}
	if got == returned {
		return false, errors.New("the broker both returned and queued the message, or neither")
	}
	if err := ch.QueueUnbind(queue, pattern, exchange, nil); err != nil {
		return false, err
	}
	return got, nil
}

// reference is RabbitMQ's topic matching written as plainly as possible:
// split both on '.', the empty string having no words, and recurse.
func reference(pattern, key string) bool {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ".")
	}
	var match func(p, k []string) bool
	match = func(p, k []string) bool {
		switch {
		case len(p) == 0:
			return len(k) == 0
		case p[0] == "#":
			// Zero words, or one more word and '#' again.
			return match(p[1:], k) || len(k) > 0 && match(p, k[1:])
		case len(k) == 0:
			return false
		case p[0] == "*" || p[0] == k[0]:
			return match(p[1:], k[1:])
		}
		return false
	}
	return match(split(pattern), split(key))
}

// words draws a pattern or key of up to six words from alphabet, which
// holds the empty word so that "a..b", "." and "" come up often.
func words(alphabet ...string) *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		ws := rapid.SliceOfN(rapid.SampledFrom(alphabet), 0, 6).Draw(t, "words")
		return strings.Join(ws, ".")
	})
}

// TestMatchLikeTheReference checks Match against reference on drawn
// patterns and keys.
func TestMatchLikeTheReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pattern := words("a", "b", "", "*", "#").Draw(t, "pattern")
		key := words("a", "b", "").Draw(t, "key")
		if got, want := topic.Match(pattern, key), reference(pattern, key); got != want {
			t.Fatalf("Match(%q, %q) = %v, the reference says %v", pattern, key, got, want)
		}
	})
}

// FuzzMatch compares Match with reference on any pattern and key.
func FuzzMatch(f *testing.F) {
	for _, c := range semantics {
		f.Add(c.pattern, c.key)
	}
	f.Fuzz(func(t *testing.T, pattern, key string) {
		// The reference is exponential in the '#'s; keep it quick.
		if strings.Count(pattern, "#") > 6 || len(pattern) > 40 || len(key) > 40 {
			t.Skip()
		}
		if got, want := topic.Match(pattern, key), reference(pattern, key); got != want {
			t.Fatalf("Match(%q, %q) = %v, the reference says %v", pattern, key, got, want)
		}
	})
}

// TestManyHashesStayFast matches a pattern of many '#'s against a key
// that it does not match, which a matcher that tries every split of the
// key at each '#' would not finish.
func TestManyHashesStayFast(t *testing.T) {
	pattern := strings.Repeat("#.a.", 60) + "x"
	key := strings.Repeat("a.", 120) + "y"
	if topic.Match(pattern, key) {
		t.Fatal("matched")
	}
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"", "#", "a..b", strings.Repeat("a", topic.MaxLength)} {
		if err := topic.Validate(ok); err != nil {
			t.Errorf("Validate(%.20q): %v", ok, err)
		}
	}
	if err := topic.Validate(strings.Repeat("a", topic.MaxLength+1)); !errors.Is(err, topic.ErrInvalidPattern) {
		t.Errorf("Validate of %d bytes = %v, want ErrInvalidPattern", topic.MaxLength+1, err)
	}
}
