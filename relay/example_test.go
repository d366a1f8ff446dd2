package relay_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

// A relay publishes every committed event, in commit order, until its
// context ends. Run it in two or more processes: one holds the lease and
// publishes, the others stand by and take over within seconds of its death.
// `eventbus serve` runs one; this is what it does.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pg, err := postgres.Open(ctx, os.Getenv("EVENTBUS_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	b, err := rabbitmq.Open(ctx, os.Getenv("EVENTBUS_AMQP_URL"), rabbitmq.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	metrics := relay.NewMetrics()
	if err := metrics.Register(prometheus.DefaultRegisterer); err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(pg, b, relay.Config{Exchange: "edupulse.events", Metrics: metrics})
	if err != nil {
		log.Fatal(err)
	}
	// On SIGTERM it waits for its confirms, saves its checkpoint and hands
	// its lease over.
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// ReadStatus reads a relay's state from the store alone, from any process:
// what `eventbus status` and GET /v1/status show.
func ExampleReadStatus() {
	ctx := context.Background()
	pg, err := postgres.Open(ctx, os.Getenv("EVENTBUS_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	st, err := relay.ReadStatus(ctx, pg, relay.DefaultName, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range st.Partitions {
		fmt.Printf("partition %d: leader %q, checkpoint at position %d\n", p.Partition, p.Leader, p.Position)
	}
	fmt.Printf("backlog %d, lag %s, held back %d\n", st.Backlog, time.Duration(st.Lag), st.HeldBack)
	if !st.Healthy {
		fmt.Println("unhealthy:", st.Problems)
	}
}
