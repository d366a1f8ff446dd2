package broker_test

import (
	"testing"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
)

// TestShardBucketsPartitionTheBuckets: for every shard count, the shards'
// bucket sets are disjoint and cover every bucket.
func TestShardBucketsPartitionTheBuckets(t *testing.T) {
	for n := 1; n <= broker.Buckets; n++ {
		var all broker.BucketSet
		total := 0
		for i := range n {
			set := broker.ShardBuckets(i, n)
			if set&all != 0 {
				t.Fatalf("n=%d: shard %d shares buckets with an earlier shard", n, i)
			}
			all |= set
			total += set.Len()
			for _, b := range set.List() {
				if b%n != i {
					t.Fatalf("n=%d: shard %d holds bucket %d", n, i, b)
				}
			}
		}
		if total != broker.Buckets || all.Len() != broker.Buckets {
			t.Fatalf("n=%d: the shards hold %d buckets, want %d", n, total, broker.Buckets)
		}
	}
}

// TestMessageBucketReadsOnlyValidBuckets: the header is outside input (any
// publisher can set it); only a canonical decimal in range is a bucket.
func TestMessageBucketReadsOnlyValidBuckets(t *testing.T) {
	for _, tc := range []struct {
		value any
		want  int
	}{
		{"0", 0}, {"7", 7}, {"63", 63},
		{"64", -1}, {"-1", -1}, {"07", -1}, {"+7", -1}, {" 7", -1}, {"", -1}, {"x", -1},
		{"100000000000000000000", -1}, {int64(7), -1}, {nil, -1}, {[]byte("7"), -1},
	} {
		m := broker.Message{Headers: map[string]any{broker.HeaderBucket: tc.value}}
		if got := broker.MessageBucket(m); got != tc.want {
			t.Errorf("MessageBucket(%#v) = %d, want %d", tc.value, got, tc.want)
		}
	}
	if got := broker.MessageBucket(broker.Message{}); got != -1 {
		t.Errorf("MessageBucket of a message without headers = %d, want -1", got)
	}
}

// TestEnvelopeMessageCarriesTheStreamBucket: the relay's messages carry the
// bucket of event.PartitionOf, which MessageBucket reads back, for any
// stream.
func TestEnvelopeMessageCarriesTheStreamBucket(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		env := event.Envelope{
			ID:      uuid.UUID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "id")),
			Type:    "quiz.submitted",
			Source:  "test",
			Subject: rapid.String().Draw(t, "subject"),
			Data:    []byte(`{}`),
		}
		m, err := broker.EnvelopeMessage(env)
		if err != nil {
			t.Skip(err)
		}
		want := event.PartitionOf(env.Subject, env.ID, broker.Buckets)
		if got := broker.MessageBucket(m); got != want || broker.BucketOf(env) != want {
			t.Fatalf("bucket %d (BucketOf %d), want %d", got, broker.BucketOf(env), want)
		}
	})
}

func TestBucketSetOf(t *testing.T) {
	s := broker.BucketSetOf(0, 5, 63, 64, -1, 5)
	if got := s.List(); len(got) != 3 || got[0] != 0 || got[1] != 5 || got[2] != 63 {
		t.Fatalf("BucketSetOf(0, 5, 63, 64, -1, 5).List() = %v, want [0 5 63]", got)
	}
	if s.Has(64) || s.Has(-1) || !s.Has(63) {
		t.Fatal("Has is wrong at the edges")
	}
}
