package memory

import "strings"

// pattern is a compiled topic binding pattern: its words, with runs of '#'
// collapsed into one, which keeps matching linear in practice.
type pattern []string

func compilePattern(p string) pattern {
	words := splitWords(p)
	out := make(pattern, 0, len(words))
	for _, w := range words {
		if w == "#" && len(out) > 0 && out[len(out)-1] == "#" {
			continue
		}
		out = append(out, w)
	}
	return out
}

// splitWords splits a routing key or pattern into its words. The empty key
// has no words, as in RabbitMQ: '#' matches it and '*' does not.
func splitWords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// matches reports whether a routing key's words match p in AMQP topic
// semantics: '*' matches exactly one word, '#' zero or more.
func (p pattern) matches(key []string) bool {
	for len(p) > 0 {
		switch p[0] {
		case "#":
			rest := p[1:]
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(key); i++ {
				if rest.matches(key[i:]) {
					return true
				}
			}
			return false
		case "*":
			if len(key) == 0 {
				return false
			}
		default:
			if len(key) == 0 || key[0] != p[0] {
				return false
			}
		}
		p, key = p[1:], key[1:]
	}
	return len(key) == 0
}
