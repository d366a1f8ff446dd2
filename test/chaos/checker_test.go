package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/consume"
)

// verdict is the checker's report: what happened, and which guarantees
// broke.
type verdict struct {
	lines    []string
	failures []string
}

func (v *verdict) printf(format string, args ...any) {
	v.lines = append(v.lines, fmt.Sprintf(format, args...))
}

func (v *verdict) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	v.failures = append(v.failures, msg)
	v.lines = append(v.lines, "FAIL: "+msg)
}

func (v *verdict) String() string { return strings.Join(v.lines, "\n") }

// run is what the checker needs to know about a run.
type run struct {
	load     *load
	obs      *observer
	workerA  *consume.Consumer
	observer *consume.Consumer
	faults   *faultLog // nil without faults
}

// outcomeCounts is one row of the checker's main query.
type outcomeCounts struct {
	outcome                                         string
	total, stored, observed, withEffect, dupEffects int64
}

// waitSettled waits until every stored event has reached the observer and
// taken effect, and the groups' queues are empty, or timeout.
func (h *harness) waitSettled(ctx context.Context, obs *observer, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var stored, effects int
	var depth []int
	for {
		err := h.direct.QueryRow(ctx, `SELECT (SELECT count(*) FROM event_store), (SELECT count(DISTINCT event_id) FROM effects)`).Scan(&stored, &effects)
		if err == nil && obs.Distinct() >= stored && effects >= stored {
			depth = depth[:0]
			for _, q := range []string{h.workers, h.observers} {
				n, err := h.queueDepth(ctx, q)
				if err != nil {
					n = -1
				}
				depth = append(depth, n)
			}
			if depth[0] == 0 && depth[1] == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("after %v: %d events stored, %d reached the observer, %d took effect; queue depths %v (err %v)",
				timeout, stored, obs.Distinct(), effects, depth, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// check verifies the guarantees on what the run left in the store, the
// observer and the effect table, and reports.
func (h *harness) check(ctx context.Context, r run) *verdict {
	v := &verdict{}
	led := r.load.led.snapshot()
	if err := h.loadLedger(ctx, led, r.obs.IDs()); err != nil {
		v.fail("load the ledger into PostgreSQL: %v", err)
		return v
	}
	counts := r.load.led.counts()
	v.printf("events dispatched: %d — %d acknowledged (HTTP single %d, HTTP batch %d, library in a business transaction %d, library on its own %d), %d rejected (%d in HTTP batches with a bad event, expected-version conflicts and failed library transactions), %d rolled back on purpose, %d with no answer",
		len(led), counts["acked"], counts[viaHTTPSingle+" acked"], counts[viaHTTPBatch+" acked"], counts[viaLibTx+" acked"], counts[viaLibNilTx+" acked"],
		counts["rejected"], counts[viaHTTPBatch+" rejected"], counts["rolled_back"], counts["unknown"])

	// The store holds each event once.
	var rows, distinct int64
	if err := h.direct.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM event_store`).Scan(&rows, &distinct); err != nil {
		v.fail("count the store: %v", err)
		return v
	}
	if rows != distinct {
		v.fail("G5: the store holds %d rows for %d distinct events", rows, distinct)
	}

	byOutcome, err := h.outcomeCounts(ctx)
	if err != nil {
		v.fail("check outcomes: %v", err)
		return v
	}
	var lost, escaped, dupEffects, missingEffects int64
	for _, c := range byOutcome {
		switch c.outcome {
		case "acked":
			lost = c.total - c.stored
			if lost > 0 {
				v.fail("G1: %d acknowledged events are not in the store%s", lost, h.examples(ctx, `SELECT l.event_id::text || ' (' || l.via || ')' FROM chaos_ledger l
					WHERE l.outcome = 'acked' AND NOT EXISTS (SELECT 1 FROM event_store e WHERE e.event_id = l.event_id)`))
			}
			if n := c.total - c.observed; n > 0 {
				v.fail("G1: %d acknowledged events never reached the observer%s", n, h.examples(ctx, `SELECT l.event_id::text || ' (' || l.via || ')' FROM chaos_ledger l
					WHERE l.outcome = 'acked' AND NOT EXISTS (SELECT 1 FROM chaos_observed o WHERE o.event_id = l.event_id)`))
			}
		case "rejected", "rolled_back":
			escaped += c.stored + c.observed + c.withEffect
			if c.stored > 0 || c.observed > 0 || c.withEffect > 0 {
				v.fail("G2: of %d %s events, %d were stored, %d delivered and %d took effect%s", c.total, c.outcome, c.stored, c.observed, c.withEffect,
					h.examples(ctx, `SELECT l.event_id::text || ' (' || l.via || ')' FROM chaos_ledger l JOIN event_store e USING (event_id) WHERE l.outcome = '`+c.outcome+`'`))
			}
		case "unknown":
			v.printf("events with no answer: %d, of which %d had been stored (and %d delivered)", c.total, c.stored, c.observed)
		}
		dupEffects += c.dupEffects
	}

	// Every stored event reached the observer and took effect exactly once,
	// and nothing reached them that is not stored.
	var storedNotObserved, observedNotStored, strays, noEffect, effectNotStored int64
	err = h.direct.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM chaos_observed o WHERE o.event_id = e.event_id)),
		(SELECT count(*) FROM chaos_observed o WHERE NOT EXISTS (SELECT 1 FROM event_store e WHERE e.event_id = o.event_id)),
		(SELECT count(*) FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM chaos_ledger l WHERE l.event_id = e.event_id)),
		(SELECT count(*) FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM effects f WHERE f.event_id = e.event_id)),
		(SELECT count(*) FROM effects f WHERE NOT EXISTS (SELECT 1 FROM event_store e WHERE e.event_id = f.event_id))`).
		Scan(&storedNotObserved, &observedNotStored, &strays, &noEffect, &effectNotStored)
	if err != nil {
		v.fail("cross-check the store, the observer and the effects: %v", err)
		return v
	}
	missingEffects = noEffect
	if storedNotObserved > 0 {
		v.fail("G1: %d stored events never reached the observer%s", storedNotObserved, h.examples(ctx,
			`SELECT e.event_id::text || ' at position ' || e.id FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM chaos_observed o WHERE o.event_id = e.event_id) ORDER BY e.id`))
	}
	if observedNotStored > 0 {
		v.fail("G2: %d events reached the observer without being stored", observedNotStored)
	}
	if strays > 0 {
		v.fail("the store holds %d events no producer dispatched", strays)
	}
	if noEffect > 0 {
		v.fail("G5: %d stored events never took effect%s", noEffect, h.examples(ctx,
			`SELECT e.event_id::text FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM effects f WHERE f.event_id = e.event_id)`))
	}
	if effectNotStored > 0 {
		v.fail("G2: %d effects of events that are not stored", effectNotStored)
	}
	var dupAll int64
	if err := h.direct.QueryRow(ctx, `SELECT count(*) FROM (SELECT event_id FROM effects GROUP BY event_id HAVING count(*) > 1) d`).Scan(&dupAll); err != nil {
		v.fail("count duplicate effects: %v", err)
	}
	if dupAll > 0 {
		v.fail("G5: %d events took effect more than once%s", dupAll, h.examples(ctx,
			`SELECT event_id::text || ' ×' || count(*) || ' by ' || string_agg(worker, ',') FROM effects GROUP BY event_id HAVING count(*) > 1`))
	}
	_ = dupEffects

	// A request or transaction is stored whole or not at all, and a business
	// row exists exactly when its transaction's events do.
	var torn, mismatched int64
	err = h.direct.QueryRow(ctx, `WITH g AS (
			SELECT l.grp, l.via, count(*) AS n, count(e.event_id) AS stored
			FROM chaos_ledger l LEFT JOIN event_store e USING (event_id) GROUP BY l.grp, l.via)
		SELECT count(*) FILTER (WHERE g.stored <> 0 AND g.stored <> g.n),
		       count(*) FILTER (WHERE g.via = 'lib-tx' AND (g.stored > 0) <> (b.tx_id IS NOT NULL))
		FROM g LEFT JOIN business b ON b.tx_id = g.grp`).Scan(&torn, &mismatched)
	if err != nil {
		v.fail("check atomicity: %v", err)
	}
	if torn > 0 {
		v.fail("G2: %d requests or transactions were stored in part", torn)
	}
	if mismatched > 0 {
		v.fail("G2: %d business transactions whose row and events disagree (one committed without the other)", mismatched)
	}

	// Order, on the observer.
	seen := r.obs.Summary()
	violations, examples := seen.Violations, seen.Examples
	deliveries, redeliveries := seen.Deliveries, seen.Redeliveries
	if violations > 0 {
		v.fail("G3: %d first deliveries out of stream order: %s", violations, strings.Join(examples, "; "))
	}

	v.printf("stored: %d events, each exactly once; reached the observer: %d; took effect: %d",
		distinct, int64(r.obs.Distinct())-observedNotStored, distinct-missingEffects)
	v.printf("lost (acknowledged, not stored or not delivered): %d; escaped (rejected or rolled back, yet stored or delivered): %d; order violations: %d; duplicate effects: %d; events without effect: %d",
		lost+storedNotObserved, escaped+observedNotStored+effectNotStored, violations, dupAll, missingEffects)
	v.printf("observer: %d deliveries of %d events, %d of them redeliveries", deliveries, r.obs.Distinct(), redeliveries)

	a := r.workerA.Stats()
	b, _, incarnations := h.bStats.total()
	v.printf("effect group: worker A %s; worker B (%d processes) %s", statsString(a), incarnations, statsString(b))
	v.printf("effect group: %d redeliveries suppressed by the inbox (duplicates), %d handler failures retried, %d dead-lettered",
		a.Duplicates+b.Duplicates, a.Retried+b.Retried, a.DeadLettered+b.DeadLettered)
	for _, g := range []string{h.workers, h.observers} {
		dlq := consume.DeadLetterQueue(g)
		n, err := h.queueDepth(ctx, dlq)
		if err != nil {
			v.fail("inspect %s: %v", dlq, err)
			continue
		}
		if n > 0 {
			reasons := []string{}
			if dls, err := consume.DeadLetters(ctx, h.amqp, g, 5); err == nil {
				for _, d := range dls {
					reasons = append(reasons, d.Reason)
				}
			}
			v.fail("%d messages in the dead-letter queue %s: %s", n, dlq, strings.Join(reasons, "; "))
		}
	}

	st := r.load.stats
	v.printf("HTTP: %d requests, %d retries, %d connection errors, %d idempotent resends answered with the original; statuses %s",
		st.httpRequests.Load(), st.httpRetries.Load(), st.httpNetErrors.Load(), st.resendsOK.Load(), st.statusLine())
	st.mu.Lock()
	for _, b := range st.breaches {
		v.fail("producer: %s", b)
	}
	if len(st.internal) > 0 {
		v.printf("HTTP 5xx answers other than 503 (retried): %s", strings.Join(st.internal, " | "))
	}
	if len(st.lies) > 0 {
		v.printf("HTTP publishes answered 503 whose events had been stored all the same (the connection failed after the commit; the retry with the same ids got 200): %d", len(st.lies))
	}
	st.mu.Unlock()
	v.printf("library: %d transactions could not begin", st.libBegins.Load())

	for _, p := range []*proc{h.serve, h.relay2, h.workerB} {
		starts, kills := p.counts()
		v.printf("%s: started %d times, SIGKILLed %d times", p.name, starts, kills)
		for _, line := range p.logs.alarmLines() {
			v.fail("%s logged: %s", p.name, line)
		}
		if n, lines := p.logs.errorLines(); n > 0 {
			v.printf("%s logged %d errors other than 503 answers; the first:\n    %s", p.name, n, strings.Join(lines, "\n    "))
		}
		if exits := p.unexpectedExits(); len(exits) > 0 {
			v.printf("%s exited on its own %d times (restarted); the first:\n%s", p.name, len(exits), exits[0])
		}
	}
	return v
}

// loadLedger copies the ledger and the observed events into tables of the
// test's schema, so that the checks are joins.
func (h *harness) loadLedger(ctx context.Context, led map[uuid.UUID]entry, observed []uuid.UUID) error {
	for _, ddl := range []string{
		`CREATE TABLE chaos_ledger (event_id uuid PRIMARY KEY, outcome text NOT NULL, via text NOT NULL, grp uuid NOT NULL)`,
		`CREATE TABLE chaos_observed (event_id uuid PRIMARY KEY)`,
	} {
		if _, err := h.direct.Exec(ctx, ddl); err != nil {
			return err
		}
	}
	ledRows := make([][]any, 0, len(led))
	for id, e := range led {
		ledRows = append(ledRows, []any{id, e.outcome.String(), e.via, e.group})
	}
	if _, err := h.direct.CopyFrom(ctx, pgx.Identifier{"chaos_ledger"}, []string{"event_id", "outcome", "via", "grp"}, pgx.CopyFromRows(ledRows)); err != nil {
		return fmt.Errorf("copy the ledger: %w", err)
	}
	obsRows := make([][]any, len(observed))
	for i, id := range observed {
		obsRows[i] = []any{id}
	}
	if _, err := h.direct.CopyFrom(ctx, pgx.Identifier{"chaos_observed"}, []string{"event_id"}, pgx.CopyFromRows(obsRows)); err != nil {
		return fmt.Errorf("copy the observed events: %w", err)
	}
	_, err := h.direct.Exec(ctx, `ANALYZE chaos_ledger; ANALYZE chaos_observed; ANALYZE effects; ANALYZE event_store`)
	return err
}

func (h *harness) outcomeCounts(ctx context.Context) ([]outcomeCounts, error) {
	rows, err := h.direct.Query(ctx, `WITH eff AS (SELECT event_id, count(*) AS n FROM effects GROUP BY event_id)
		SELECT l.outcome, count(*), count(e.event_id), count(o.event_id), count(eff.event_id), count(*) FILTER (WHERE eff.n > 1)
		FROM chaos_ledger l
		LEFT JOIN event_store e USING (event_id)
		LEFT JOIN chaos_observed o USING (event_id)
		LEFT JOIN eff USING (event_id)
		GROUP BY l.outcome`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []outcomeCounts
	for rows.Next() {
		var c outcomeCounts
		if err := rows.Scan(&c.outcome, &c.total, &c.stored, &c.observed, &c.withEffect, &c.dupEffects); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].outcome < out[j].outcome })
	return out, rows.Err()
}

// examples returns up to five rows of a one-column query, for a failure
// message.
func (h *harness) examples(ctx context.Context, sql string) string {
	rows, err := h.direct.Query(ctx, sql+" LIMIT 5")
	if err != nil {
		return fmt.Sprintf(" (examples: %v)", err)
	}
	defer rows.Close()
	var ex []string
	for rows.Next() {
		var s string
		if rows.Scan(&s) == nil {
			ex = append(ex, s)
		}
	}
	if len(ex) == 0 {
		return ""
	}
	return "; for example " + strings.Join(ex, ", ")
}

func statsString(s consume.Stats) string {
	return fmt.Sprintf("{handled %d, duplicates %d, failed %d, retried %d, dead-lettered %d, resubscribes %d}",
		s.Handled, s.Duplicates, s.Failed, s.Retried, s.DeadLettered, s.Resubscribes)
}
