package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kinds of fault.
const (
	faultCut     = "cut"     // close every connection through a proxy; new ones are accepted at once
	faultDown    = "down"    // close them and refuse new ones for a while (a server outage)
	faultLatency = "latency" // delay data through a proxy for a while
	faultKill    = "kill"    // SIGKILL a process, restart it after a while
)

// fault is one entry of the schedule.
type fault struct {
	At      time.Duration // from the start of the run
	Kind    string
	Target  string        // a proxy or a process
	For     time.Duration // how long an outage, latency or killed process lasts
	Latency time.Duration
	Jitter  time.Duration
}

func (f fault) String() string {
	s := fmt.Sprintf("%8.3fs %-7s %-13s", f.At.Seconds(), f.Kind, f.Target)
	switch f.Kind {
	case faultLatency:
		s += fmt.Sprintf(" %v±%v for %v", f.Latency, f.Jitter, f.For)
	case faultDown, faultKill:
		s += fmt.Sprintf(" for %v", f.For)
	}
	return s
}

// schedule draws the faults of a run of length d from seed: the same seed
// and length give the same schedule. A target is not given a second
// outage, latency or kill while one lasts; cuts come at any time.
func schedule(seed int64, d time.Duration) []fault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a05))
	busy := map[string]time.Duration{} // target -> end of its current window
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	var plan []fault
	for at := ms(300, 1000); at < d; at += ms(200, 1200) {
		f := fault{At: at}
		switch k := rng.IntN(100); {
		case k < 40:
			f.Kind, f.Target = faultCut, proxyNames[rng.IntN(len(proxyNames))]
		case k < 58:
			f.Kind, f.Target, f.For = faultLatency, proxyNames[rng.IntN(len(proxyNames))], ms(500, 3000)
			f.Latency = ms(20, 250)
			f.Jitter = f.Latency / 2
		case k < 72:
			f.Kind, f.Target, f.For = faultDown, proxyNames[rng.IntN(len(proxyNames))], ms(200, 2000)
		default:
			procs := []string{procServe, procServe, procServe, procRelay, procRelay, procWorkerB, procWorkerB}
			f.Kind, f.Target, f.For = faultKill, procs[rng.IntN(len(procs))], ms(0, 1500)
		}
		if f.Kind != faultCut {
			if busy[f.Target] > at {
				// The target is in a window already: cut it instead (a
				// kill's target is a process, so cut its AMQP proxy).
				f.Kind, f.For, f.Latency, f.Jitter = faultCut, 0, 0, 0
				if !strings.Contains(f.Target, ".") {
					f.Target += ".amqp"
				}
			} else {
				f.For = min(f.For, d-at)
				busy[f.Target] = at + f.For + 100*time.Millisecond
			}
		}
		plan = append(plan, f)
	}
	return plan
}

// faultLog counts the faults injected, by kind and target.
type faultLog struct {
	mu     sync.Mutex
	counts map[string]int
	notes  []string // what a kill found in flight, failures to inject
}

func newFaultLog() *faultLog { return &faultLog{counts: map[string]int{}} }

func (l *faultLog) add(key, note string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[key]++
	if note != "" && len(l.notes) < 200 {
		l.notes = append(l.notes, note)
	}
}

// byKind sums the counts into the categories of the report.
func (l *faultLog) byKind() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	sums := map[string]int{}
	for key, n := range l.counts {
		kind, target, _ := strings.Cut(key, " ")
		switch {
		case kind == faultKill:
			sums["SIGKILL "+target] += n
		case strings.HasSuffix(target, ".pg"):
			sums["PostgreSQL "+kind] += n
		case strings.HasSuffix(target, ".amqp"):
			sums["AMQP "+kind] += n
		default:
			sums[kind] += n
		}
	}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s: %d", k, sums[k])
	}
	return out
}

func (l *faultLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.counts {
		n += c
	}
	return n
}

// byTarget returns the counts by kind and target.
func (l *faultLog) byTarget() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, l.counts[k])
	}
	return strings.Join(parts, ", ")
}

// injector applies a schedule to the harness.
type injector struct {
	h      *harness
	log    *faultLog
	mu     sync.Mutex
	timers []*time.Timer
	wg     sync.WaitGroup // restorations
	kills  sync.WaitGroup
}

// run applies the plan from start on, until ctx ends.
func (in *injector) run(ctx context.Context, start time.Time, plan []fault) {
	for _, f := range plan {
		wait := time.Until(start.Add(f.At))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return
		}
		if f.Kind == faultKill {
			// A kill waits for the process to die (up to 2 s for the
			// consumer's crash): the schedule must not wait with it.
			in.kills.Go(func() { in.apply(f) })
			continue
		}
		in.apply(f)
	}
}

func (in *injector) apply(f fault) {
	h := in.h
	key := f.Kind + " " + f.Target
	switch f.Kind {
	case faultCut:
		if err := h.proxies[f.Target].Cut(); err != nil {
			in.log.add("failed "+key, err.Error())
			return
		}
		in.log.add(key, "")
	case faultDown:
		p := h.proxies[f.Target]
		p.Down()
		in.log.add(key, "")
		in.later(f.For, func() { _ = p.Up() })
	case faultLatency:
		p := h.proxies[f.Target]
		if err := p.AddLatency(f.Latency, f.Jitter); err != nil {
			in.log.add("failed "+key, err.Error())
			return
		}
		in.log.add(key, "")
		in.later(f.For, p.ClearFaults)
	case faultKill:
		var p *proc
		note := ""
		switch f.Target {
		case procServe:
			p = h.serve
		case procRelay:
			p = h.relay2
		case procWorkerB:
			p = h.workerB
		}
		if p == h.workerB {
			// The consumer dies mid-batch: it kills itself inside a
			// handler's transaction.
			self, ok := p.crash(crashSignal, 2*time.Second)
			if !ok {
				in.log.add("skipped "+key, "")
				return
			}
			note = fmt.Sprintf("%v: the consumer process was SIGKILLed while idle", f.At.Round(time.Millisecond))
			if self {
				note = fmt.Sprintf("%v: the consumer process was SIGKILLed %s", f.At.Round(time.Millisecond), h.bStats.lastCrash())
			}
		} else if !p.kill() {
			in.log.add("skipped "+key, "")
			return
		}
		in.log.add(key, note)
		in.later(f.For, func() {
			if err := p.start(); err != nil {
				in.log.add("failed restart "+f.Target, err.Error())
			}
		})
	}
}

// later runs fn after d, unless stop came first.
func (in *injector) later(d time.Duration, fn func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.wg.Add(1)
	t := time.AfterFunc(d, func() {
		defer in.wg.Done()
		fn()
	})
	in.timers = append(in.timers, t)
}

// stop waits for the kills in progress, cancels the restorations still
// pending and waits for those running; heal then restores everything.
func (in *injector) stop() {
	in.kills.Wait()
	in.mu.Lock()
	for _, t := range in.timers {
		if t.Stop() {
			in.wg.Done()
		}
	}
	in.timers = nil
	in.mu.Unlock()
	in.wg.Wait()
}
