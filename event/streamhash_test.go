package event_test

import (
	"testing"

	"github.com/edupulse/eventbus/event"
	"github.com/google/uuid"
)

// The hash is part of the stored format: these values must never change.
func TestStreamHashIsStable(t *testing.T) {
	id := uuid.MustParse("0192b6d2-7c4e-7000-8000-000000000001")
	for _, tc := range []struct {
		subject string
		id      uuid.UUID
		want    uint32
	}{
		{"", uuid.Nil, 0x69691905},
		{"quiz/1", uuid.Nil, 0xed3787d0},
		{"learner/42", id, 0xb39dffcd},
		{"", id, 0x510833ff},
	} {
		if got := event.StreamHash(tc.subject, tc.id); got != tc.want {
			t.Errorf("StreamHash(%q, %s) = %#x, want %#x", tc.subject, tc.id, got, tc.want)
		}
	}
}

func TestPartitionOfKeepsAStreamTogether(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	for n := 1; n <= 16; n++ {
		p := event.PartitionOf("learner/7", a, n)
		if p < 0 || p >= n {
			t.Fatalf("PartitionOf(n=%d) = %d, out of range", n, p)
		}
		if q := event.PartitionOf("learner/7", b, n); q != p {
			t.Fatalf("n=%d: one stream in partitions %d and %d", n, p, q)
		}
	}
	if p := event.PartitionOf("x", a, 0); p != 0 {
		t.Fatalf("PartitionOf(n=0) = %d, want 0", p)
	}
}
