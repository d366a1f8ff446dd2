package bench

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/eventbus/config"
)

// CPU says where the processor time of a scenario went, from the first
// event to the last one received: what bounds a run on a small machine,
// where the bus, PostgreSQL and RabbitMQ share the cores.
type CPU struct {
	// Seconds of CPU time: this process (the bus, the relay, the consumer
	// and the load generator), the run's PostgreSQL backends and the
	// server's WAL writer, checkpointer and background writer, the RabbitMQ
	// server, and everything else on the machine (other users' work).
	// Store and broker are measured only when the server runs on this
	// machine.
	Bus    float64 `json:"bus_seconds"`
	Store  float64 `json:"store_seconds,omitempty"`
	Broker float64 `json:"broker_seconds,omitempty"`
	Other  float64 `json:"other_seconds"`
	// Busy is the share of the machine's cores that was busy, and Others
	// the share that other processes took.
	Busy   float64 `json:"busy"`
	Others float64 `json:"others"`
	// Per event, in microseconds of CPU time.
	BusPerEvent    float64 `json:"bus_us_per_event"`
	StorePerEvent  float64 `json:"store_us_per_event,omitempty"`
	BrokerPerEvent float64 `json:"broker_us_per_event,omitempty"`
}

// WAL is what PostgreSQL's write-ahead log did during a scenario, from
// pg_stat_wal: server-wide, so other work on the server adds to it.
type WAL struct {
	BytesPerEvent  float64 `json:"bytes_per_event"`
	RecordsPerEvt  float64 `json:"records_per_event"`
	FullPageImages int64   `json:"full_page_images"`
	Syncs          int64   `json:"syncs"`
	EventsPerSync  float64 `json:"events_per_sync"`
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux build that matters.
const clockTick = 10 * time.Millisecond

// usage is a snapshot of the counters.
type usage struct {
	self, machineBusy, machineAll time.Duration
	store                         map[int]time.Duration
	broker                        map[int]time.Duration
	wal                           walCounters
	walOK                         bool
}

type walCounters struct{ records, fpi, bytes, syncs int64 }

// meter takes the snapshots: it knows which processes are the servers'
// when they run here.
type meter struct {
	pool        *pgxpool.Pool // the service's, to find the run's backends
	localStore  bool
	localBroker bool
}

// openMeter returns a meter for env's servers. On PostgreSQL it keeps a
// connection of its own.
func openMeter(ctx context.Context, env *environment) (*meter, error) {
	m := &meter{}
	if !env.cfg.Embedded() {
		cfg, err := pgxpool.ParseConfig(env.cfg.DatabaseURL)
		if err != nil {
			return nil, fmt.Errorf("bench: the database URL %s is not valid", config.Redact(env.user.DatabaseURL))
		}
		cfg.MaxConns = 1
		if m.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("bench: connect to PostgreSQL: %w", err)
		}
		m.localStore = isLocal(cfg.ConnConfig.Host)
	}
	if !env.cfg.InProcessBroker() {
		if u, err := url.Parse(env.cfg.AMQPURLs[0]); err == nil && len(env.cfg.AMQPURLs) == 1 {
			m.localBroker = isLocal(u.Hostname())
		}
	}
	return m, nil
}

// isLocal reports whether host is this machine: a loopback address, or a
// Unix socket directory.
func isLocal(host string) bool {
	if host == "localhost" || strings.HasPrefix(host, "/") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (m *meter) close() {
	if m.pool != nil {
		m.pool.Close()
	}
}

func (m *meter) snapshot(ctx context.Context) usage {
	var u usage
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	u.machineBusy, u.machineAll = machineCPU()
	if m.pool != nil {
		u.wal, u.walOK = m.walCounters(ctx)
	}
	if m.localStore {
		u.store = map[int]time.Duration{}
		for _, pid := range m.storePIDs(ctx) {
			if t, ok := processCPU(pid); ok {
				u.store[pid] = t
			}
		}
	}
	if m.localBroker {
		u.broker = map[int]time.Duration{}
		for _, pid := range pidsNamed("beam.smp") {
			if t, ok := processCPU(pid); ok {
				u.broker[pid] = t
			}
		}
	}
	return u
}

// storePIDs lists the run's backends (by their application name) and the
// server processes that write for every backend.
func (m *meter) storePIDs(ctx context.Context) []int {
	rows, err := m.pool.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE application_name = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`, applicationName)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (m *meter) walCounters(ctx context.Context) (walCounters, bool) {
	var w walCounters
	err := m.pool.QueryRow(ctx, `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync FROM pg_stat_wal`).
		Scan(&w.records, &w.fpi, &w.bytes, &w.syncs)
	return w, err == nil
}

// between returns the CPU and WAL use from a to b, for events events.
func between(a, b usage, events int64) (*CPU, *WAL) {
	sum := func(before, after map[int]time.Duration) time.Duration {
		var d time.Duration
		for pid, t := range after {
			d += t - before[pid] // a process that started since counts whole
		}
		return d
	}
	c := &CPU{Bus: (b.self - a.self).Seconds()}
	store, broker := sum(a.store, b.store), sum(a.broker, b.broker)
	c.Store, c.Broker = store.Seconds(), broker.Seconds()
	if all := b.machineAll - a.machineAll; all > 0 {
		busy := b.machineBusy - a.machineBusy
		c.Busy = busy.Seconds() / all.Seconds()
		c.Other = max(0, busy.Seconds()-c.Bus-c.Store-c.Broker)
		c.Others = c.Other / all.Seconds()
	}
	if events > 0 {
		per := func(s float64) float64 { return s * 1e6 / float64(events) }
		c.BusPerEvent, c.StorePerEvent, c.BrokerPerEvent = per(c.Bus), per(c.Store), per(c.Broker)
	}
	if !a.walOK || !b.walOK || events <= 0 {
		return c, nil
	}
	w := &WAL{
		BytesPerEvent:  float64(b.wal.bytes-a.wal.bytes) / float64(events),
		RecordsPerEvt:  float64(b.wal.records-a.wal.records) / float64(events),
		FullPageImages: b.wal.fpi - a.wal.fpi,
		Syncs:          b.wal.syncs - a.wal.syncs,
	}
	if w.Syncs > 0 {
		w.EventsPerSync = float64(events) / float64(w.Syncs)
	}
	return c, w
}

// processCPU returns the user and system CPU time of process pid.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * clockTick, true
}

// pidsNamed lists the processes whose command is name.
func pidsNamed(name string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// machineCPU returns the machine's busy and total CPU time, all cores
// together, from /proc/stat.
func machineCPU() (busy, all time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var total, idle int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is counted in user time already
			break
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(total-idle) * clockTick, time.Duration(total) * clockTick
}
