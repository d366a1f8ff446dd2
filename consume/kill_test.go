package consume_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// The environment of a worker subprocess (TestShardWorkerProcess).
const (
	envWorker         = "CONSUME_SHARD_WORKER"
	envWorkerAMQP     = "CONSUME_SHARD_WORKER_AMQP"
	envWorkerDB       = "CONSUME_SHARD_WORKER_DB"
	envWorkerExchange = "CONSUME_SHARD_WORKER_EXCHANGE"
	envWorkerGroup    = "CONSUME_SHARD_WORKER_GROUP"
	envWorkerShards   = "CONSUME_SHARD_WORKER_SHARDS"
)

// TestShardWorkerProcess is a worker process of a sharded group, started
// by TestShardedGroupSurvivesSIGKILL: it records every event it handles in
// PostgreSQL, in a row numbered at insert time, and runs until it is
// killed (or SIGTERM).
func TestShardWorkerProcess(t *testing.T) {
	if os.Getenv(envWorker) == "" {
		t.Skip("a worker subprocess of TestShardedGroupSurvivesSIGKILL")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv(envWorkerDB))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b, err := rabbitmq.Open(ctx, os.Getenv(envWorkerAMQP), rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	shards, err := strconv.Atoi(os.Getenv(envWorkerShards))
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	c, err := consume.New(b, consume.Config{
		Group: os.Getenv(envWorkerGroup), Exchange: os.Getenv(envWorkerExchange),
		Shards: shards, Concurrency: 2, Logger: testLogger(),
	}, consume.On(func(ctx context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
		_, err := pool.Exec(ctx, `INSERT INTO handled (subject, version, pid) VALUES ($1, $2, $3)`, env.Subject, env.StreamVersion, pid)
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
		fmt.Println("ready")
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// worker is a running worker subprocess.
type worker struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorker starts a worker subprocess and waits until it has subscribed.
func startWorker(t *testing.T, env []string) *worker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestShardWorkerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.TrimSpace(sc.Text()) == "ready" {
				close(ready)
				signalled = true
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() { w.kill(t) })
	select {
	case <-ready:
	case <-w.done:
		t.Fatal("the worker exited before subscribing")
	case <-time.After(60 * time.Second):
		t.Fatal("the worker did not subscribe within 60 s")
	}
	return w
}

// kill SIGKILLs the worker and waits for it to exit.
func (w *worker) kill(t *testing.T) {
	_ = w.cmd.Process.Kill()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Errorf("worker %d did not exit 30 s after SIGKILL", w.cmd.Process.Pid)
	}
}

// TestShardedGroupSurvivesSIGKILL: three worker processes of a group with
// six shards on RabbitMQ share the shards while events of 24 streams flow; one is killed with SIGKILL mid-stream. The others take its shards:
// every event is handled, and every stream in version order (by the order
// in which the handlers recorded them).
func TestShardedGroupSurvivesSIGKILL(t *testing.T) {
	e := newEnv(t, rabbitMQKind)
	const shards, processes = 6, 3
	e.cleanupShards(shards)
	dbURL := testenv.PostgresSchema(t)
	ctx := testenv.Context(t, 5*time.Minute)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE handled (seq bigserial PRIMARY KEY, subject text NOT NULL, version bigint NOT NULL, pid int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	env := []string{
		envWorker + "=1", envWorkerAMQP + "=" + testenv.AMQPURL(), envWorkerDB + "=" + dbURL,
		envWorkerExchange + "=" + e.exchange, envWorkerGroup + "=" + e.group, envWorkerShards + "=" + strconv.Itoa(shards),
	}
	workers := make([]*worker, processes)
	for i := range workers {
		workers[i] = startWorker(t, env)
	}

	streams := shardStreams("kill", shards, 4)
	versions, stopPublisher := publishSteadily(t, e, streams)
	perProcess := func() map[int]int {
		rows, err := pool.Query(ctx, `SELECT pid, count(*) FROM handled GROUP BY pid`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int]int{}
		for rows.Next() {
			var pid, n int
			if err := rows.Scan(&pid, &n); err != nil {
				t.Fatal(err)
			}
			out[pid] = n
		}
		return out
	}

	eventually(t, 90*time.Second, "every worker to handle events", func() bool {
		counts := perProcess()
		for _, w := range workers {
			if counts[w.cmd.Process.Pid] < 20 {
				return false
			}
		}
		return true
	})
	t.Logf("handled per worker before the kill: %v", perProcess())
	victim := workers[0]
	victim.kill(t)
	atKill := versions()
	eventually(t, 60*time.Second, "more events published after the kill", func() bool { return versions() >= atKill+20 })
	stopPublisher()
	last := versions()

	eventually(t, 90*time.Second, "every published event to be handled", func() bool {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(DISTINCT (subject, version)) FROM handled`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == last*int64(len(streams))
	})
	t.Logf("%d versions of %d streams; handled per worker: %v (worker %d killed)", last, len(streams), perProcess(), victim.cmd.Process.Pid)

	rows, err := pool.Query(ctx, `SELECT subject, version, pid FROM handled ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	next := map[string]int64{}
	after := map[int]bool{}
	for rows.Next() {
		var subject string
		var version int64
		var pid int
		if err := rows.Scan(&subject, &version, &pid); err != nil {
			t.Fatal(err)
		}
		want := max(next[subject], 1)
		switch {
		case version == want:
			next[subject] = want + 1
		case version > want:
			t.Errorf("worker %d handled %s version %d before version %d", pid, subject, version, want)
		}
		// The round after atKill may have been on its way at the kill.
		if version > atKill+1 {
			after[pid] = true
		}
	}
	if after[victim.cmd.Process.Pid] {
		t.Errorf("the killed worker handled events published after its death")
	}
	for _, w := range workers[1:] {
		if !after[w.cmd.Process.Pid] {
			t.Logf("worker %d handled none of the events published after the kill (its shards may all have stayed with the other)", w.cmd.Process.Pid)
		}
	}
}
