// Package topic is the one implementation of AMQP topic matching in the
// bus, with RabbitMQ's semantics: the in-process broker (broker/memory)
// routes with it, and the consumer runtime (consume) uses it to check that
// every route can be reached by the patterns its queue is bound with.
//
// A routing key and a binding pattern are words separated by '.'. In a
// pattern, '*' matches exactly one word and '#' matches zero or more. As in
// RabbitMQ, an empty word is a word ("a..b" has three words, the middle one
// empty) and the empty string has no words at all: '#' matches the empty
// routing key and '*' does not. TestMatchAgainstRabbitMQ checks these rules
// against a real RabbitMQ.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLength is the longest binding pattern or routing key in bytes: AMQP
// carries both as short strings.
const MaxLength = 255

// ErrInvalidPattern reports a binding pattern the broker would refuse.
var ErrInvalidPattern = errors.New("topic: invalid pattern")

// Validate reports why RabbitMQ would refuse pattern as a binding key: it
// accepts any pattern of at most MaxLength bytes.
func Validate(pattern string) error {
	if len(pattern) > MaxLength {
		return fmt.Errorf("%w: pattern %.20q… is %d bytes long; the limit is %d", ErrInvalidPattern, pattern, len(pattern), MaxLength)
	}
	return nil
}

// Words splits a routing key or a pattern into its words. The empty string
// has none.
func Words(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// Pattern is a compiled binding pattern, for matching many keys.
type Pattern struct {
	words []string
}

// Compile compiles pattern. Every string compiles; Validate says whether a
// broker would accept it.
func Compile(pattern string) Pattern { return Pattern{words: Words(pattern)} }

// Match reports whether routing key key matches pattern.
func Match(pattern, key string) bool { return Compile(pattern).Match(key) }

// Match reports whether routing key key matches p.
func (p Pattern) Match(key string) bool { return p.MatchWords(Words(key)) }

// MatchWords reports whether a routing key, split by Words, matches p: a
// router that tries many patterns splits each key once.
//
// It walks the pattern word by word, keeping the set of key prefixes that
// the pattern so far matches, so that it takes time proportional to the
// product of the two lengths whatever the pattern: trying every split of
// the key at each '#' would be exponential in the number of '#'s.
func (p Pattern) MatchWords(key []string) bool {
	// matched[j]: the pattern's words so far match key[:j].
	matched := make([]bool, len(key)+1)
	next := make([]bool, len(key)+1)
	matched[0] = true
	for _, w := range p.words {
		switch w {
		case "#":
			reached := false
			for j := range matched {
				reached = reached || matched[j]
				next[j] = reached
			}
		default:
			next[0] = false
			for j := 1; j <= len(key); j++ {
				next[j] = matched[j-1] && (w == "*" || key[j-1] == w)
			}
		}
		matched, next = next, matched
	}
	return matched[len(key)]
}
