package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cpuTimes is a snapshot of CPU time spent so far by the bench process, by
// each of PostgreSQL's and RabbitMQ's processes (per process, so that a
// delta counts only what each did in between), and by the whole machine.
type cpuTimes struct {
	bench, machineBusy         time.Duration
	postgresProcs, rabbitProcs map[int]time.Duration
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat and /proc/stat: 100 on
// every Linux that matters.
const clockTick = 10 * time.Millisecond

// readCPU takes a snapshot. A process's time includes that of its children
// that have exited (cutime, cstime): the postmaster collects the time of the
// backends that ended, so connections closing in between lose nothing.
func readCPU() cpuTimes {
	c := cpuTimes{postgresProcs: map[int]time.Duration{}, rabbitProcs: map[int]time.Duration{}}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.bench = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		comm, total, ok := procStat(dir)
		if !ok {
			continue
		}
		switch {
		case comm == "postgres" || comm == "postmaster":
			c.postgresProcs[pid] = total
		case comm == "beam.smp":
			c.rabbitProcs[pid] = total
		}
	}
	c.machineBusy = machineBusy()
	return c
}

// procStat returns a process's command name and its utime+stime+cutime+cstime.
func procStat(dir string) (string, time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	comm := s[open+1 : closing]
	// After the command: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	f := strings.Fields(s[closing+1:])
	if len(f) < 15 {
		return "", 0, false
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return comm, time.Duration(ticks) * clockTick, true
}

// machineBusy is the time all the machine's cores were not idle.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		// idle and iowait are fields 4 and 5; guest times are already in user.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// cpuDelta is the CPU time each side spent between two snapshots.
type cpuDelta struct{ bench, postgres, rabbit, other time.Duration }

func sub(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		// A process born in between counts whole: all of it is in between.
		if t0 := before[pid]; t > t0 {
			d += t - t0
		}
	}
	return d
}

func deltaCPU(before, after cpuTimes) cpuDelta {
	d := cpuDelta{
		bench:    after.bench - before.bench,
		postgres: sub(before.postgresProcs, after.postgresProcs),
		rabbit:   sub(before.rabbitProcs, after.rabbitProcs),
	}
	d.other = max(0, after.machineBusy-before.machineBusy-d.bench-d.postgres-d.rabbit)
	return d
}

// latencies records how long callers' calls took. Each caller appends to a
// slice of its own; the report sorts them once.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(part []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, part...)
	l.mu.Unlock()
}

// addOne records one latency; it is safe to call from any goroutine.
func (l *latencies) addOne(d time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d)
	l.mu.Unlock()
}

// reset forgets what was recorded (the warm-up's).
func (l *latencies) reset() {
	l.mu.Lock()
	l.all = l.all[:0]
	l.mu.Unlock()
}

// count says how many latencies were recorded.
func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// quantile returns the q-quantile (0 < q ≤ 1) of the recorded latencies, or
// 0 when none were recorded.
func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return 0
	}
	if !slices.IsSorted(l.all) {
		slices.Sort(l.all)
	}
	i := int(q*float64(len(l.all))+0.5) - 1
	return l.all[min(max(i, 0), len(l.all)-1)]
}
