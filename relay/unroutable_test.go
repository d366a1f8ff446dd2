package relay_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
)

// lockedBuffer is a bytes.Buffer safe for a logger and the test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestUnroutableWarnsOncePerType: events that no queue is bound for are
// warned about once per type, and counted by type in
// eventbus_relay_unroutable_total.
func TestUnroutableWarnsOncePerType(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "quiz.*") // nobody takes lessons or badges
	ctx := context.Background()
	for i := range 3 {
		lesson := edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "Ratios " + string(rune('A'+i))}
		if _, err := h.bus.Dispatch(ctx, lesson); err != nil {
			t.Fatal(err)
		}
	}
	badge := edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: uuid.New(), Reason: "90+"}
	if _, err := h.bus.Dispatch(ctx, badge); err != nil {
		t.Fatal(err)
	}
	q, err := h.bus.Dispatch(ctx, quiz(3))
	if err != nil {
		t.Fatal(err)
	}
	metrics := relay.NewMetrics()
	var logs lockedBuffer
	r, _ := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Metrics: metrics,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	col.waitFor(1, 30*time.Second)
	waitCheckpoint(t, h, r, q.Position)
	if got := metrics.Unroutable(edupulse.TypeLessonPublished); got != 3 {
		t.Errorf("unroutable lesson.published = %v, want 3", got)
	}
	if got := metrics.Unroutable(edupulse.TypeBadgeAwarded); got != 1 {
		t.Errorf("unroutable badge.awarded = %v, want 1", got)
	}
	if got := strings.Count(logs.String(), "no queue is bound for events of type "+edupulse.TypeLessonPublished); got != 1 {
		t.Errorf("%d warnings about lesson.published, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "no queue is bound for events of type "+edupulse.TypeBadgeAwarded); got != 1 {
		t.Errorf("%d warnings about badge.awarded, want 1:\n%s", got, logs.String())
	}
}
