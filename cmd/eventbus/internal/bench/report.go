package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run. It encodes to JSON as `eventbus bench
// --json` prints it.
type Report struct {
	Started time.Time `json:"started"`
	Store   string    `json:"store"`  // "postgresql" or "sqlite"
	Broker  string    `json:"broker"` // "rabbitmq" or "in-process"
	// Objects is the prefix of what the run created and removed: the
	// exchange and queues, and, with underscores for the dots, the
	// PostgreSQL schema.
	Objects   string        `json:"objects"`
	Machine   Machine       `json:"machine"`
	Options   ReportOptions `json:"options"`
	Ceilings  []Ceiling     `json:"ceilings"`
	Scenarios []Result      `json:"scenarios"`
	Targets   []Target      `json:"targets"`
}

// Machine describes where the run ran.
type Machine struct {
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	// StoreVersion is PostgreSQL's SELECT version(), or SQLite's version.
	StoreVersion string `json:"store_version"`
	// BrokerVersion is RabbitMQ's, from the connection's server
	// properties, when it was reached.
	BrokerVersion string `json:"broker_version,omitempty"`
	// The load averages (1, 5, 15 minutes) when the run started and
	// ended: other work on the machine shows here.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// ReportOptions are the sizes the run used.
type ReportOptions struct {
	Scenarios       []string `json:"scenarios"`
	DurationSeconds float64  `json:"duration_seconds"`
	Events          int64    `json:"events,omitempty"`
	RelayLagSeconds float64  `json:"relay_lag_seconds"`
	CeilingSeconds  float64  `json:"ceiling_seconds"`
	Callers         int      `json:"callers"`
	BatchSize       int      `json:"batch_size"`
	BatchCallers    int      `json:"batch_callers"`
	RelayLagRate    int      `json:"relay_lag_rate"`
	RelayLagBatch   int      `json:"relay_lag_batch"`
}

func reportOptions(o Options) ReportOptions {
	return ReportOptions{Scenarios: o.Scenarios, DurationSeconds: o.Duration.Seconds(), Events: o.Events,
		RelayLagSeconds: o.RelayLagDuration.Seconds(), CeilingSeconds: o.CeilingDuration.Seconds(),
		Callers: o.Callers, BatchSize: o.BatchSize, BatchCallers: o.BatchCallers, RelayLagRate: o.RelayLagRate,
		RelayLagBatch: o.RelayLagBatch}
}

// Ceiling names.
const (
	CeilingSingleRow = "single-row-commits"
	CeilingBulk      = "bulk-rows"
	CeilingConfirms  = "publish-confirms"
)

// Ceiling is what a server does alone, measured in the same run.
type Ceiling struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	PerSecond   float64 `json:"per_second"`
	Count       int64   `json:"count"`
	Seconds     float64 `json:"seconds"`
	// CPU and WAL count per row or message, as a scenario's per event.
	CPU   *CPU   `json:"cpu,omitempty"`
	WAL   *WAL   `json:"wal,omitempty"`
	Error string `json:"error,omitempty"`
}

// Latency holds quantiles, in milliseconds.
type Latency struct {
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Samples int64   `json:"samples"`
}

func latencyOf(h *histogram) *Latency {
	if h == nil || h.count() == 0 {
		return nil
	}
	q := h.quantiles(0.5, 0.99, 0.999)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &Latency{P50: ms(q[0]), P99: ms(q[1]), P999: ms(q[2]), Samples: h.count()}
}

// Result is one scenario's outcome.
type Result struct {
	Name string `json:"name"`
	// What says what was measured, and how.
	What         string   `json:"what"`
	Events       int64    `json:"events"`
	Seconds      float64  `json:"seconds"`
	PerSecond    float64  `json:"events_per_second"`
	Latency      *Latency `json:"latency,omitempty"`
	PeakRSSBytes int64    `json:"peak_rss_bytes"`
	// Ceiling names the ceiling the scenario is set beside, and Ratio is
	// PerSecond over that ceiling's rate.
	Ceiling string  `json:"ceiling,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	// CPU says where the processor time went; WAL what PostgreSQL wrote.
	CPU *CPU `json:"cpu,omitempty"`
	WAL *WAL `json:"wal,omitempty"`
	// Beside is the scenario measured again in turns with its ceiling
	// (replay on RabbitMQ only; see Beside).
	Beside *Beside `json:"beside,omitempty"`
	Note   string  `json:"note,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Beside is a scenario measured again in turns with its ceiling, in short
// slices of each, so that the server's drift during the run falls on both
// alike. On a small machine RabbitMQ's cost per message moves by a third
// within minutes, more than the difference a ratio to a ceiling measured
// once, at the start, is meant to show. The pairs alternate which slice
// goes first, so that a steady drift does not favour either; the rates are
// totals over the slices.
type Beside struct {
	Pairs            int     `json:"pairs"`
	SliceSeconds     float64 `json:"slice_seconds"`
	PerSecond        float64 `json:"events_per_second"`
	CeilingPerSecond float64 `json:"ceiling_per_second"`
	// Ratio is PerSecond over CeilingPerSecond; PairRatios are each
	// pair's, for their spread.
	Ratio      float64   `json:"ratio"`
	PairRatios []float64 `json:"pair_ratios"`
	Error      string    `json:"error,omitempty"`
}

// ceilingOf says which ceiling each scenario is set beside.
var ceilingOf = map[string]string{
	DispatchLatency: CeilingSingleRow,
	E2E16:           CeilingSingleRow,
	HTTP16:          CeilingSingleRow,
	ConsumeInbox:    CeilingSingleRow,
	ConsumeInbox1:   CeilingSingleRow,
	E2EBatch:        CeilingBulk,
	E2EStream:       CeilingConfirms,
	RelayLag:        CeilingConfirms,
	Replay:          CeilingConfirms,
}

func (r *Result) attachCeiling(ceilings []Ceiling) {
	r.Ceiling = ceilingOf[r.Name]
	for _, c := range ceilings {
		if c.Name == r.Ceiling && c.PerSecond > 0 && r.PerSecond > 0 {
			r.Ratio = r.PerSecond / c.PerSecond
		}
	}
}

func (r Result) summary() string {
	if r.Error != "" {
		return fmt.Sprintf("%s failed: %s", r.Name, r.Error)
	}
	s := fmt.Sprintf("%s: %s events in %.1fs, %s/s", r.Name, group(float64(r.Events)), r.Seconds, group(r.PerSecond))
	if r.Latency != nil {
		s += fmt.Sprintf(", p50 %s p99 %s p999 %s", ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.P999))
	}
	return s + ", peak RSS " + mib(r.PeakRSSBytes)
}

// Target is one of the performance targets (docs/contracts.md,
// "Performance targets"), checked against the run.
type Target struct {
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Measured string `json:"measured"`
	// Status is PASS, MISS, or "not run" when its scenario did not run
	// (or failed).
	Status string `json:"status"`
}

const mebibyte = 1 << 20

// evaluateTargets checks the run against the performance targets of
// docs/contracts.md.
func evaluateTargets(rep Report) []Target {
	find := func(name string) *Result {
		for i := range rep.Scenarios {
			if r := &rep.Scenarios[i]; r.Name == name && r.Error == "" && r.Events > 0 {
				return r
			}
		}
		return nil
	}
	var out []Target
	add := func(name, scenario string, measure func(r *Result) (string, bool)) {
		t := Target{Name: name, Scenario: scenario, Status: "not run"}
		if r := find(scenario); r != nil {
			var ok bool
			if t.Measured, ok = measure(r); ok {
				t.Status = "PASS"
			} else {
				t.Status = "MISS"
			}
		}
		out = append(out, t)
	}
	add("dispatch latency p99 <= 1 ms (1 caller)", DispatchLatency, func(r *Result) (string, bool) {
		if r.Latency == nil {
			return "no samples", false
		}
		return "p99 " + ms(r.Latency.P99), r.Latency.P99 <= 1
	})
	add("end to end >= 15,000 events/s (16 callers, 1 event/tx)", E2E16, func(r *Result) (string, bool) {
		return group(r.PerSecond) + "/s", r.PerSecond >= 15000
	})
	add("end to end >= 70% of the single-row commit ceiling", E2E16, func(r *Result) (string, bool) {
		if r.Ratio == 0 {
			return "no ceiling", false
		}
		return fmt.Sprintf("%.0f%%", 100*r.Ratio), r.Ratio >= 0.7
	})
	add("end to end >= 30,000 events/s (batches)", E2EBatch, func(r *Result) (string, bool) {
		return group(r.PerSecond) + "/s", r.PerSecond >= 30000
	})
	add(fmt.Sprintf("relay lag p99 <= 20 ms at %s events/s", group(float64(rep.Options.RelayLagRate))), RelayLag, func(r *Result) (string, bool) {
		if r.Latency == nil {
			return "no samples", false
		}
		// The rate must have been held too, or the lag says nothing.
		held := r.PerSecond >= 0.95*float64(rep.Options.RelayLagRate)
		m := "p99 " + ms(r.Latency.P99) + " at " + group(r.PerSecond) + "/s"
		return m, held && r.Latency.P99 <= 20
	})
	add("replay >= 30,000 events/s", Replay, func(r *Result) (string, bool) {
		return group(r.PerSecond) + "/s", r.PerSecond >= 30000
	})
	// Resident memory: the most any scenario took.
	t := Target{Name: "resident memory <= 64 MiB at full load", Scenario: "all", Status: "not run"}
	var peak int64
	var at string
	for _, r := range rep.Scenarios {
		if r.PeakRSSBytes > peak {
			peak, at = r.PeakRSSBytes, r.Name
		}
	}
	if peak > 0 {
		t.Measured = mib(peak) + " (" + at + ")"
		t.Status = "MISS"
		if peak <= 64*mebibyte {
			t.Status = "PASS"
		}
	}
	return append(out, t)
}

// WriteTable writes the report as the table `eventbus bench` prints: a
// header describing the machine and the servers, the ceilings, one row per
// scenario, and the targets.
func (rep Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "eventbus bench: %s store, %s broker, %s\n", rep.Store, rep.Broker, rep.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %d cores, %s memory, %s %s; load %s at start, %s at end\n",
		m.Cores, gib(m.MemoryBytes), m.GoVersion, m.OS, orDash(m.LoadStart), orDash(m.LoadEnd))
	fmt.Fprintf(&b, "store:   %s\n", orDash(m.StoreVersion))
	broker := rep.Broker
	if m.BrokerVersion != "" {
		broker = "RabbitMQ " + m.BrokerVersion
	}
	fmt.Fprintf(&b, "broker:  %s\n", broker)
	o := rep.Options
	var size string
	switch {
	case o.Events > 0 && o.DurationSeconds == 0:
		size = fmt.Sprintf("%s events per scenario (relay-lag at %s events/s)", group(float64(o.Events)), group(float64(o.RelayLagRate)))
	case o.Events > 0:
		size = fmt.Sprintf("up to %s events or %gs per scenario (relay-lag %gs at %s events/s)", group(float64(o.Events)),
			o.DurationSeconds, o.RelayLagSeconds, group(float64(o.RelayLagRate)))
	default:
		size = fmt.Sprintf("%gs per scenario (relay-lag %gs at %s events/s)", o.DurationSeconds, o.RelayLagSeconds, group(float64(o.RelayLagRate)))
	}
	size += fmt.Sprintf(", ceilings %gs", o.CeilingSeconds)
	fmt.Fprintf(&b, "size:    %s; %d callers, batches of %d from %d callers\n\n", size, o.Callers, o.BatchSize, o.BatchCallers)

	b.WriteString("ceilings (measured in this run):\n")
	for _, c := range rep.Ceilings {
		if c.Error != "" {
			fmt.Fprintf(&b, "  %-20s failed: %s\n", c.Name, c.Error)
			continue
		}
		fmt.Fprintf(&b, "  %-20s %10s/s  %s\n", c.Name, group(c.PerSecond), c.Description)
	}
	b.WriteString("\n")

	// Numbers align right; the names, padded to one width, read left.
	width := len("scenario")
	for _, r := range rep.Scenarios {
		width = max(width, len(r.Name))
	}
	left := func(s string) string { return s + strings.Repeat(" ", width-len(s)) }
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tevents\tevents/s\tp50\tp99\tp999\tpeak RSS\tceiling\tratio\t\n", left("scenario"))
	for _, r := range rep.Scenarios {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%s\t%s\t-\t\n", left(r.Name), mib(r.PeakRSSBytes), r.Ceiling)
			continue
		}
		p50, p99, p999 := "-", "-", "-"
		if r.Latency != nil {
			p50, p99, p999 = ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.P999)
		}
		ratio := "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", left(r.Name), group(float64(r.Events)), group(r.PerSecond),
			p50, p99, p999, mib(r.PeakRSSBytes), r.Ceiling, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, r := range rep.Scenarios {
		switch {
		case r.Error != "":
			fmt.Fprintf(&b, "%s FAILED: %s\n", r.Name, r.Error)
		case r.What != "" || r.Note != "":
			fmt.Fprintf(&b, "%s: %s%s\n", r.Name, r.What, prefixed("; ", r.Note))
		}
	}
	for _, r := range rep.Scenarios {
		if bs := r.Beside; bs != nil {
			writeBeside(&b, r.Name, r.Ceiling, bs)
		}
	}
	writeCPU(&b, rep)
	b.WriteString("\ntargets (docs/contracts.md#performance-targets):\n")
	for _, t := range rep.Targets {
		fmt.Fprintf(&b, "  %-7s %-58s %s\n", t.Status, t.Name, t.Measured)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBeside writes the line of a scenario measured in turns with its
// ceiling.
func writeBeside(b *strings.Builder, name, ceiling string, bs *Beside) {
	if bs.Error != "" || len(bs.PairRatios) == 0 {
		fmt.Fprintf(b, "%s in turns with %s FAILED: %s\n", name, ceiling, bs.Error)
		return
	}
	lo, hi := slices.Min(bs.PairRatios), slices.Max(bs.PairRatios)
	fmt.Fprintf(b, "%s in turns with %s, %d pairs of %gs slices: %s/s against %s/s, %.0f%% (pairs %.0f%%–%.0f%%)\n",
		name, ceiling, bs.Pairs, bs.SliceSeconds, group(bs.PerSecond), group(bs.CeilingPerSecond), 100*bs.Ratio, 100*lo, 100*hi)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// group formats n rounded, with thousands separated by commas.
func group(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func ms(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.3fms", v)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/mebibyte)
}

func gib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
}

// describeMachine reads what the machine is.
func describeMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), MemoryBytes: memTotal(), GoVersion: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH}
}

// memTotal reads the machine's memory from /proc/meminfo, or 0.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// loadAverage reads the 1, 5 and 15 minute load averages, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// writeCPU writes where the processor time went, per event (per row or
// message for a ceiling), and what that allows on this machine's cores.
func writeCPU(b *strings.Builder, rep Report) {
	storeName, brokerName := "store", "broker"
	if rep.Store == "postgresql" {
		storeName = "PostgreSQL"
	}
	if rep.Broker == "rabbitmq" {
		brokerName = "RabbitMQ"
	}
	b.WriteString("\nwhere the CPU went, in µs of CPU time per event (per row or message for a ceiling); max/s is what the\n")
	fmt.Fprintf(b, "machine's %d cores allow at that cost; others is the share of the machine other processes took:\n", rep.Machine.Cores)
	width := len("scenario")
	for _, c := range rep.Ceilings {
		width = max(width, len(c.Name))
	}
	left := func(s string) string { return s + strings.Repeat(" ", width-len(s)) }
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tbus\t%s\t%s\ttotal\tmax/s\tbusy\tothers\tWAL B/event\tevents/fsync\t\n", left("scenario"), storeName, brokerName)
	row := func(name string, c *CPU, w *WAL) {
		if c == nil || c.BusPerEvent == 0 {
			return
		}
		us := func(v float64) string {
			if v == 0 {
				return "-"
			}
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		total := c.BusPerEvent + c.StorePerEvent + c.BrokerPerEvent
		walBytes, perSync := "-", "-"
		if w != nil {
			walBytes = strconv.FormatFloat(w.BytesPerEvent, 'f', 0, 64)
			if w.EventsPerSync > 0 {
				perSync = strconv.FormatFloat(w.EventsPerSync, 'f', 1, 64)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%.0f%%\t%s\t%s\t\n", left(name), us(c.BusPerEvent), us(c.StorePerEvent),
			us(c.BrokerPerEvent), us(total), group(float64(rep.Machine.Cores)*1e6/total), 100*c.Busy, 100*c.Others, walBytes, perSync)
	}
	for _, c := range rep.Ceilings {
		row(c.Name, c.CPU, c.WAL)
	}
	for _, r := range rep.Scenarios {
		row(r.Name, r.CPU, r.WAL)
	}
	_ = tw.Flush()
}
