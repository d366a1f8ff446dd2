package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// machine describes where a run took place.
type machine struct {
	cores              int
	postgres, rabbitmq string
	modules            []string // path@version of the peers and clients
}

func describeMachine(ctx context.Context, o options) machine {
	m := machine{cores: runtime.NumCPU()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, o.DatabaseURL); err == nil {
		_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&m.postgres)
		conn.Close(ctx)
	}
	if conn, err := dialAMQP(ctx, o.AMQPURL, "peers-version"); err == nil {
		if v, ok := conn.Properties["version"].(string); ok {
			m.rabbitmq = v
		}
		_ = conn.Close()
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/ThreeDotsLabs/watermill", "github.com/ThreeDotsLabs/watermill-sql/v4",
				"github.com/ThreeDotsLabs/watermill-amqp/v3", "github.com/jackc/pgx/v5", "github.com/rabbitmq/amqp091-go":
				m.modules = append(m.modules, d.Path+" "+d.Version)
			case "github.com/edupulse/eventbus":
				m.modules = append(m.modules, d.Path+" (this checkout)")
			}
		}
	}
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// markdown renders the header, the table and the ratios.
func markdown(o options, m machine, started time.Time, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Peer comparison, one run (`cd bench/peers && go run .`), %s UTC\n\n", started.Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, "- machine: %d cores (nproc), %s/%s, %s\n", m.cores, runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- servers: PostgreSQL %s, RabbitMQ %s\n", orUnknown(m.postgres), orUnknown(m.rabbitmq))
	fmt.Fprintf(&b, "- modules: %s\n", strings.Join(m.modules, ", "))
	fmt.Fprintf(&b, "- each point: %v warm-up, then %v measured; events/s counts the events the consumer received, from the first call to the last receipt; "+
		"latency is the caller's call (commit or confirm included); CPU is per event over the measured interval, from /proc: "+
		"this process (callers, relay or forwarder, consumer), all postgres processes, beam.smp, and the rest of the machine\n", o.Warmup, o.Duration)
	if o.Rate > 0 {
		fmt.Fprintf(&b, "- paced: the callers start %s calls per second in all, as evenly as they can (`--rate`)\n", group(float64(o.Rate)))
	}
	b.WriteString("\n")

	b.WriteString("| scenario | callers | events/s | dispatch p50 | dispatch p99 | bench µs/event | PostgreSQL µs/event | RabbitMQ µs/event | total µs/event | other processes µs/event | status |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		status := "ok"
		if extra := r.received - r.events; r.err == nil && extra > 0 && r.delivers {
			// At-least-once designs may deliver an event twice.
			status = fmt.Sprintf("ok, %d received twice", extra)
		}
		if r.err != nil {
			status = "FAILED: " + strings.ReplaceAll(r.err.Error(), "|", "/")
		}
		p50, p99 := "—", "—"
		if r.hasLatency && r.events > 0 {
			p50, p99 = ms(r.p50), ms(r.p99)
		}
		total := r.cpu.bench + r.cpu.postgres + r.cpu.rabbit
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s |\n",
			r.scenario, r.callers, group(r.perSecond()), p50, p99,
			r.perEvent(r.cpu.bench), r.perEvent(r.cpu.postgres), r.perEvent(r.cpu.rabbit), r.perEvent(total), r.perEvent(r.cpu.other), status)
	}

	header := false
	for _, n := range o.Callers {
		bus, ok := find(results, BusInTx, n)
		if !ok {
			continue
		}
		if !header {
			header = true
			b.WriteString("\nRatios of events/s (the issue's targets: ≥ 1.5× the first version at 1 and 16 callers; ≥ 5× Watermill at 16, ≥ 1.5× at 1):\n\n")
			b.WriteString("| callers | bus-in-tx / first-version | bus-in-tx / watermill |\n|---:|---:|---:|\n")
		}
		fmt.Fprintf(&b, "| %d | %s | %s |\n", n, ratio(bus, results, FirstVersion, n), ratio(bus, results, Watermill, n))
	}

	writeBounds(&b, o, m, results)
	writeOutboxBounds(&b, o, results)
	writeLags(&b, results)

	b.WriteString("\nScenarios:\n\n")
	for _, sc := range chosen(o.Scenarios) {
		fmt.Fprintf(&b, "- `%s`: %s\n", sc.name, sc.what)
	}
	return b.String()
}

// writeBounds writes, for each caller count, the most events per second
// that any outbox in the caller's transaction could deliver on this
// machine, from the ceilings of the same run: each event costs at least
// the caller's transaction (ceiling-commit-tx) and a confirmed, consumed
// message (ceiling-confirm), so the cores allow at most cores / (the sum
// of their CPU per event), and the callers at most what ceiling-commit-tx
// reached alone. The relay's read of the event back is not counted: the
// bound is above what an outbox can reach.
func writeBounds(b *strings.Builder, o options, m machine, results []result) {
	confirm, ok := find(results, CeilingConfirm, 1)
	if !ok {
		return
	}
	header := false
	for _, n := range o.Callers {
		tx, okTx := find(results, CeilingTx, n)
		bus, okBus := find(results, BusInTx, n)
		if !okTx || !okBus {
			continue
		}
		if !header {
			header = true
			b.WriteString("\nWhat bounds an outbox in the caller's transaction on this machine (`ceiling-commit-tx` + `ceiling-confirm` CPU per event; the rate is the lower of the cores' bound and `ceiling-commit-tx`'s own rate):\n\n")
			b.WriteString("| callers | floor µs/event | bound events/s | bus-in-tx events/s | bus-in-tx / bound | 1.5× first-version |\n|---:|---:|---:|---:|---:|---:|\n")
		}
		floor := tx.perEvent(tx.cpu.bench+tx.cpu.postgres+tx.cpu.rabbit) + confirm.perEvent(confirm.cpu.bench+confirm.cpu.postgres+confirm.cpu.rabbit)
		bound := tx.perSecond()
		if floor > 0 {
			bound = min(bound, float64(m.cores)*1e6/floor)
		}
		fmt.Fprintf(b, "| %d | %.0f | %s | %s | %.2f | %s |\n", n, floor, group(bound), group(bus.perSecond()), bus.perSecond()/bound,
			firstVersionTarget(results, n))
	}
}

// writeOutboxBounds sets each design of the bus beside the cheapest outbox
// of the same design (ceiling-outbox, ceiling-outbox-tx), measured in the
// same run: what callers reach, and wait, while the same cores deliver
// every event through the same RabbitMQ. An outbox that delivers as
// promptly does not beat its rate or its latency, so a target beyond them
// is out of reach on this machine.
func writeOutboxBounds(b *strings.Builder, o options, results []result) {
	designs := []struct{ what, bus, cheapest string }{
		{"in the caller's transaction", BusInTx, CeilingOutTx},
		{"in a transaction of its own", BusOwnTx, CeilingOutbox},
	}
	header := false
	for _, n := range o.Callers {
		for _, d := range designs {
			bus, okBus := find(results, d.bus, n)
			cheap, okCheap := find(results, d.cheapest, n)
			if !okBus || !okCheap {
				continue
			}
			if !header {
				header = true
				b.WriteString("\nWhat delivering costs the callers: each design of the bus beside the cheapest outbox of the same design, measured in the same run (`ceiling-outbox`, `ceiling-outbox-tx`: the ceiling's INSERT, then a publisher in memory that publishes what gathered, with confirms; no read back, no headers, nothing kept for a crash):\n\n")
				b.WriteString("| callers | the event is recorded | cheapest outbox events/s | its dispatch p99 | bus events/s | bus dispatch p99 | bus / cheapest | 1.5× first-version |\n|---:|---|---:|---:|---:|---:|---:|---:|\n")
			}
			fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %.2f | %s |\n", n, d.what, group(cheap.perSecond()), ms(cheap.p99),
				group(bus.perSecond()), ms(bus.p99), bus.perSecond()/cheap.perSecond(), firstVersionTarget(results, n))
		}
	}
}

// writeLags writes the lag from an event's recording to the broker's
// confirm, for the designs that can tell: the bus (its relay's) and the
// cheapest outbox. Callers that go as fast as they can fill the machine,
// and the lag then grows with the backlog; --rate measures it at a rate
// the machine may hold.
func writeLags(b *strings.Builder, results []result) {
	header := false
	for _, r := range results {
		if !r.hasLag || r.err != nil {
			continue
		}
		if !header {
			header = true
			b.WriteString("\nLag from an event's recording (its INSERT) to the broker's confirm of its message:\n\n")
			b.WriteString("| scenario | callers | events/s | lag p50 | lag p99 |\n|---|---:|---:|---:|---:|\n")
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", r.scenario, r.callers, group(r.perSecond()), ms(r.lagP50), ms(r.lagP99))
	}
}

// firstVersionTarget is the rate the targets ask of the bus at n callers:
// 1.5× the first version's in the same run, or "—" when it did not run.
func firstVersionTarget(results []result, n int) string {
	fv, ok := find(results, FirstVersion, n)
	if !ok {
		return "—"
	}
	return group(1.5 * fv.perSecond())
}

func find(results []result, name string, callers int) (result, bool) {
	for _, r := range results {
		if r.scenario == name && r.callers == callers {
			return r, r.err == nil && r.perSecond() > 0
		}
	}
	return result{}, false
}

func ratio(bus result, results []result, peer string, callers int) string {
	p, ok := find(results, peer, callers)
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", bus.perSecond()/p.perSecond())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// group writes n rounded, with thousands separated by commas.
func group(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
