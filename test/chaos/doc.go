// Package chaos checks the bus's guarantees (docs/guarantees.md, G1–G8) end to end
// under random faults and sustained load. It holds only tests: it builds the
// `eventbus` command and runs `eventbus serve` as a subprocess on the shared
// PostgreSQL and RabbitMQ servers, each connection through a fault proxy
// (internal/testenv), in a schema and an exchange of its own.
//
// # TestChaos
//
// For -chaos.duration, producers publish over HTTP (single events and
// batches, with ids of their own, retried until they get an answer) and
// through the library (eventbus.Bus inside business transactions that also
// write a business row; some roll back on purpose). Two consumer instances
// of one group (consume.New with an OnAnyTx handler that writes an effect row
// in the inbox's transaction) share the work; one runs in a subprocess. An
// observer group records every delivery. Meanwhile a seeded random schedule
// cuts PostgreSQL and AMQP connections (of serve, the second relay, the
// producers and the consumers), adds latency, takes a server away for a
// while, SIGKILLs serve, a second relay (`serve --relay-only`) and the
// consumer subprocess, and restarts them.
//
// Then the checker prints what happened and fails on any breach: an
// acknowledged event not stored exactly once or not delivered (G1, G5); an
// event of a rejected or rolled-back dispatch stored or delivered, or a
// business transaction whose row and events disagree (G2); a stream whose
// versions reached the observer, first deliveries only, out of order or with
// a gap (G3); an event whose effect happened other than once (G5). The
// observer group is where order is promised: one process, a handler that
// never fails. The effect group's two processes split streams between them,
// so their order is not checked (see package consume).
//
// A failure prints its seed. -chaos.seed=N replays the same schedule of
// faults and the same choices of the producers; the interleaving of threads
// and network, and so the exact events a fault hits, differ from run to run.
// go test ./... shows a passing package's output only with -v: set
// EVENTBUS_CHAOS_REPORT to a file name to have every report appended there.
//
// # TestSoak
//
// With -soak.duration set, the same system runs without faults at a steady
// -soak.rate events/s. A table of serve's resident memory, goroutines,
// PostgreSQL connections and RabbitMQ connections and channels is printed as
// it goes, and the test fails when one of them is still growing after the
// warm-up: the mean of the last third of the samples above the middle
// third's by more than a tolerance.
//
// # Flags
//
//	-chaos.duration  how long faults are injected (default 2m when CI or
//	                 EVENTBUS_REQUIRE_SERVICES=1 is set, 20s otherwise, 10s with -short)
//	-chaos.seed      the schedule's seed (default: a fresh one, printed)
//	-chaos.rate      events/s the producers aim at (default 300)
//	-soak.duration   run TestSoak this long (default 0: skipped)
//	-soak.rate       events/s during the soak (default 2000)
//	-soak.sample     time between samples (default: a 30th of the duration, 2s to 30s)
//
// For example
//
//	go test ./test/chaos -run TestChaos -v -chaos.duration=10m
//	go test ./test/chaos -run TestChaos -v -chaos.seed=1234567
//	go test ./test/chaos -run TestSoak -v -soak.duration=5m -timeout=30m
//
// TestBadInput feeds a table of bad inputs to the HTTP API of a serve
// process and to the library (Bus.Dispatch, Append and AppendTx, and the store's
// filters): each must get a clear, typed error, and nothing may be stored
// (G7). FuzzDecodeMessage and FuzzConsumeDelivery fuzz what the consumer
// runtime does with a message before a handler sees it; go test runs their
// seed corpus.
//
// There is deliberately no `eventbus chaos` command: the harness SIGKILLs
// processes and cuts connections through an in-process Toxiproxy, which has
// no place in the binary operators run against production. Operators who
// want the same proof for their servers run this package with
// EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_AMQP_URL pointing at them.
package chaos
