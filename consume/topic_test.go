package consume

import (
	"errors"
	"testing"
)

// TestTopicPatternsReachRoutes: a route is reachable when one of the
// group's patterns matches its type as RabbitMQ matches routing keys
// (broker/topic, checked against RabbitMQ there): '#' stands for zero or
// more words, '*' for exactly one.
func TestTopicPatternsReachRoutes(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		reachable    bool
	}{
		{"quiz.submitted", "quiz.submitted", true},
		{"quiz.*", "quiz.submitted", true},
		{"quiz.*", "quiz", false},
		{"quiz.*", "quiz.submitted.late", false},
		{"#", "quiz.submitted", true},
		{"quiz.#", "quiz", true},
		{"quiz.#", "quiz.a.b", true},
		{"#.submitted", "submitted", true},
		{"*.submitted", "submitted", false},
		{"a.#.z", "a.z", true},
		{"a.#.z", "a.b.c", false},
		{"lesson.*", "quiz.submitted", false},
	} {
		rt := router{byType: map[string]*route{tc.typ: {typ: tc.typ}}}
		err := rt.checkReachable([]string{tc.pattern})
		if got := err == nil; got != tc.reachable {
			t.Errorf("route %q with pattern %q: checkReachable = %v, want reachable %v", tc.typ, tc.pattern, err, tc.reachable)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("route %q with pattern %q: %v, want ErrInvalidConfig", tc.typ, tc.pattern, err)
		}
	}
}
