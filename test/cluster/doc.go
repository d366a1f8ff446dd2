// Package cluster runs the bus on the engines users scale out with, each
// started by the test on this machine beside the shared servers, and checks
// that it heals by itself when one of their nodes fails (DESIGN.md, "Beyond
// one machine"). It holds only tests: they build the `eventbus` command and
// run `eventbus serve` as a subprocess, post events over HTTP, and receive
// them with an observer consumer group in the test process that checks each
// stream's order (internal/testenv.StreamObserver).
//
//   - TestRabbitClusterNodeLoss: a 3-node RabbitMQ cluster
//     (testenv.StartRabbitCluster) with the observer's quorum queue
//     replicated on all three; EVENTBUS_AMQP_URL lists the nodes. The node
//     that serve and the observer are connected to is SIGKILLed mid-stream.
//   - TestPostgresFailover: a PostgreSQL primary and an asynchronous
//     streaming standby (testenv.StartPostgresPair), EVENTBUS_DATABASE_URL
//     listing both with target_session_attrs=read-write. The primary is shut
//     down and the standby promoted mid-stream.
//   - TestPostgresFailoverSynchronous: the same with a synchronous standby,
//     and the primary crashed instead.
//   - TestPartitionedRelays: the relay as two `serve --relay-only`
//     processes sharing 4 partitions (EVENTBUS_RELAY_PARTITIONS=4) on the
//     shared servers; one is SIGKILLed mid-stream, the other must hold all
//     four partitions within 10 s, then a third joins and must get its
//     share within 10 s. BenchmarkPartitionedRelays measures 1, 2 and 4
//     relay processes over 4 partitions (BENCHMARKS.md).
//
// Each checks that every acknowledged event, and every stored one, reaches
// the observer, that no stream's first deliveries come out of order, and
// that serve kept running; and reports how long it took to heal. Set
// EVENTBUS_CLUSTER_REPORT to a file name to have the figures appended there.
// The tests run in parallel; with the race detector on a loaded 2-core
// machine the package takes about two minutes:
//
//	EVENTBUS_REQUIRE_SERVICES=1 go test -race -v ./test/cluster
package cluster
