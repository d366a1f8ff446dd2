package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

// scalingEvents is how many events each run of BenchmarkPartitionedRelays
// drains.
const scalingEvents = 30000

// BenchmarkPartitionedRelays measures the relay's throughput end to end
// with 1, 2 and 4 `serve --relay-only` processes sharing 4 partitions, on
// the shared PostgreSQL and RabbitMQ: the processes start on an empty
// store and settle their shares; then scalingEvents events on 1000
// streams commit in one transaction, and the clock runs from that commit
// until a consumer in the test process (prefetch 2000, one ack per
// message) has received every one of them from a quorum queue bound to
// every type. The same with one partition and one process is the
// baseline. BENCHMARKS.md has the figures:
//
//	go test ./test/cluster -run '^$' -bench PartitionedRelays -benchtime 1x
func BenchmarkPartitionedRelays(b *testing.B) {
	testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
	for _, c := range []struct{ partitions, procs int }{{1, 1}, {4, 1}, {4, 2}, {4, 4}} {
		b.Run(fmt.Sprintf("partitions=%d/processes=%d", c.partitions, c.procs), func(b *testing.B) {
			for range b.N {
				rate, cpu := drainWithRelays(b, c.partitions, c.procs)
				b.ReportMetric(rate, "events/s")
				var parts []string
				for _, name := range []string{"eventbus", "postgres", "beam.smp", "cluster.test"} {
					perEvent := float64(cpu[name].Microseconds()) / scalingEvents
					b.ReportMetric(perEvent, name+"-cpu-µs/event")
					parts = append(parts, fmt.Sprintf("%s %.0f µs", name, perEvent))
				}
				b.Logf("%d relay processes, %d partitions: %d events in %.2fs, %.0f events/s; CPU per event during the drain, by command (every process of the machine, other helpers' included): %s",
					c.procs, c.partitions, scalingEvents, float64(scalingEvents)/rate, rate, strings.Join(parts, ", "))
			}
		})
	}
}

// drainWithRelays returns the throughput, and the CPU time every command
// of the machine used from the commit to the last delivery.
func drainWithRelays(b *testing.B, partitions, procs int) (float64, map[string]time.Duration) {
	ctx := testenv.Context(b, 5*time.Minute)
	dbURL := testenv.PostgresSchema(b)
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	exchange, queue := testenv.Name("scaling_x"), testenv.Name("scaling_q")
	mq, err := rabbitmq.Open(ctx, testenv.AMQPURL(), rabbitmq.Config{ConnectionName: "scaling-consumer"})
	if err != nil {
		b.Fatal(err)
	}
	defer mq.Close()
	if err := mq.DeclareExchange(ctx, exchange); err != nil {
		b.Fatal(err)
	}
	if err := mq.DeclareQueue(ctx, broker.QueueSpec{Name: queue, Bindings: []broker.Binding{{Exchange: exchange, Pattern: "#"}}}); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cleanCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = mq.DeleteQueue(cleanCtx, queue)
		_ = mq.DeleteExchange(cleanCtx, exchange)
	}()
	sub, err := mq.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: 2000})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	done := make(chan time.Time, 1)
	go func() {
		seen := make(map[string]struct{}, scalingEvents)
		for d := range sub.Deliveries() {
			seen[d.MessageID] = struct{}{}
			_ = d.Ack()
			if len(seen) == scalingEvents {
				done <- time.Now()
				return
			}
		}
	}()

	env := []string{"EVENTBUS_DATABASE_URL=" + dbURL, "EVENTBUS_AMQP_URL=" + testenv.AMQPURL(),
		"EVENTBUS_EXCHANGE=" + exchange, fmt.Sprintf("EVENTBUS_RELAY_PARTITIONS=%d", partitions), masterKeyEnv}
	var relays []*relayProc
	for i := range procs {
		relays = append(relays, startRelayOnly(b, fmt.Sprint(i), env))
	}
	defer func() {
		for _, p := range relays {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.exited
		}
	}()
	// Wait until the processes hold their shares: every partition, by
	// procs holders.
	deadline := time.Now().Add(time.Minute)
	for {
		leases, err := st.Leases(ctx, relay.DefaultName)
		holders := map[string]int{}
		held := 0
		for _, l := range leases {
			if l.Holder != "" && l.Until.After(time.Now()) {
				holders[l.Holder]++
				held++
			}
		}
		if err == nil && held == partitions && len(holders) == min(procs, partitions) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the relay processes did not share the partitions: %v, %v", holders, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for batch := 0; batch < scalingEvents; batch += 1000 {
		drafts := make([]event.Draft, 1000)
		for i := range drafts {
			drafts[i] = event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Source: "scaling",
				Subject: fmt.Sprintf("learner-%d", (batch+i)%1000), OccurredAt: time.Now().Truncate(event.TimePrecision),
				CorrelationID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}`)}
		}
		if _, err := st.AppendTx(ctx, tx, drafts); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	before := cpuByCommand()
	committed := time.Now()
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case last := <-done:
		b.StopTimer()
		after := cpuByCommand()
		for name, t := range before {
			after[name] -= t
		}
		return float64(scalingEvents) / last.Sub(committed).Seconds(), after
	case <-ctx.Done():
		b.Fatalf("not every event arrived: %v", ctx.Err())
		return 0, nil
	}
}

// cpuByCommand returns the CPU time (user and system) that the processes
// of the machine have used, summed by command name, from /proc.
func cpuByCommand() map[string]time.Duration {
	out := map[string]time.Duration{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		name := string(b[open+1 : close])
		fields := strings.Fields(string(b[close+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		out[name] += time.Duration(utime+stime) * time.Second / clockTicks
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on Linux everywhere in practice.
const clockTicks = 100
