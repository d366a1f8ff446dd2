package memory

import "testing"

func TestPatternMatching(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"#", "", true},
		{"*", "", false},
		{"", "", true},
		{"", "a", false},
		{"a", "a", true},
		{"a", "a.b", false},
		{"a.*", "a", false},
		{"a.#", "a", true},
		{"#.a", "a", true},
		{"#.#", "a.b.c", true},
		{"#.#.#.c", "c", true},
		{"a.#.#.z", "a.z", true},
		{"a.#.z", "a.b.c.y", false},
		{"*.#", "", false},
		{"*.#", "a", true},
		{"#.*", "a.b", true},
		{"*.*", "a..b", false},
		{"a.*.b", "a..b", true}, // an empty word is a word
		{"#.b.#.b", "b.x.b.y", false},
		{"#.b.#.b", "b.x.b.y.b", true},
	}
	for _, tt := range tests {
		if got := compilePattern(tt.pattern).matches(splitWords(tt.key)); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}

func TestPatternWithManyHashesStaysFast(t *testing.T) {
	p := compilePattern("#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.x")
	key := splitWords("a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.y")
	if p.matches(key) {
		t.Fatal("matched")
	}
}
