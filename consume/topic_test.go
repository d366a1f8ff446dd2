package consume

import "testing"

func TestTopicMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"quiz.submitted", "quiz.submitted", true},
		{"quiz.*", "quiz.submitted", true},
		{"quiz.*", "quiz", false},
		{"quiz.*", "quiz.submitted.late", false},
		{"#", "quiz.submitted", true},
		{"#", "x", true},
		{"quiz.#", "quiz", true},
		{"quiz.#", "quiz.a.b", true},
		{"#.submitted", "quiz.submitted", true},
		{"#.submitted", "submitted", true},
		{"*.submitted", "submitted", false},
		{"a.#.z", "a.z", true},
		{"a.#.z", "a.b.c.z", true},
		{"a.#.z", "a.b.c", false},
		{"lesson.*", "quiz.submitted", false},
	} {
		if got := topicMatch(tc.pattern, tc.key); got != tc.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}
