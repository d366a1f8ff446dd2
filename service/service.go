// Package service assembles the eventbus service from its configuration:
// the event store (PostgreSQL, or the embedded SQLite store), the broker
// (RabbitMQ, or the in-process broker), the bus, the relay and the HTTP API.
//
// `eventbus serve` runs a Service. Programs that embed the bus open one too:
// with no configuration at all they get the embedded default, a store in a
// local directory and a broker inside the process, so that a worker runs on
// a bare machine exactly as it will on PostgreSQL and RabbitMQ.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/console"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/erasure"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/internal/buildinfo"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/sqlite"
)

// Config tunes Open; the settings of the store and the broker themselves
// are a config.Config. The zero Config is the service `eventbus serve` runs
// without flags: every field's zero value is its default.
type Config struct {
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry holds the event types the bus accepts. Default: the
	// EduPulse types.
	Registry *event.Registry
	// Migrate brings the PostgreSQL schema up to date on open. The
	// embedded store always migrates: nobody else would.
	Migrate bool
	// Source is the default source of events the service records.
	// Default "eventbus".
	Source string
	// Relay configures the relay Run starts. Its store, broker, exchange,
	// logger and metrics come from the service.
	Relay relay.Config
	// StoreOnly opens the store and the bus, not the broker nor the relay:
	// for tools that only read or record events.
	StoreOnly bool
	// MustExist refuses to create the embedded store: for tools that only
	// read, which would otherwise create an empty store wherever they run
	// and report that it holds nothing.
	MustExist bool
}

// Service is an open store and broker, with the bus, relay and HTTP API built
// on them.
type Service struct {
	Config config.Config
	// Store is the event store as every reader of the service reads it
	// (the relay, replays, the HTTP API, the live stream): the store's
	// events through the read transforms, so that each event comes in the
	// latest version of its type unless the reader asks for the stored
	// one (event.WithStoredVersions).
	Store  store.Store
	Broker broker.Broker
	// Bus records events in the store, in transactions of its own or in a
	// Tx of the store, whichever store it is.
	Bus      *eventbus.Bus[Tx]
	Metrics  *prometheus.Registry
	Logger   *slog.Logger
	registry *event.Registry
	// raw is the store without the read transform of Store, for its
	// optional interfaces (store.Migrator, store.SubjectKeys).
	raw     store.Store
	keyring *erasure.Keyring
	// ephemeralKEK: no master key configured or found (see EphemeralKEK).
	ephemeralKEK bool
	pg           *postgres.Store
	lite         *sqlite.Store
	driver       store.TxStore[Tx]
	memory       *memory.Broker
	relay        *relay.Relay
	relayName    string
	relayRef     atomic.Pointer[relay.Relay]
	closers      []func() error
}

// connectTimeout bounds how long Open waits for PostgreSQL to answer: a
// server that accepts connections and says nothing must not hang start-up.
const connectTimeout = 10 * time.Second

// Open opens the store and the broker that cfg names and builds the bus. It
// logs where the data lives. Close releases everything.
func Open(ctx context.Context, cfg config.Config, opts Config) (*Service, error) {
	s := &Service{Config: cfg, Logger: opts.Logger, registry: opts.Registry, Metrics: prometheus.NewRegistry(),
		relayName: relay.DefaultName}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.registry == nil {
		s.registry = edupulse.Registry()
	}
	if opts.Source == "" {
		opts.Source = "eventbus"
	}
	if cfg.SchemaDir != "" {
		// Every schema is read and compiled once, here; a bad file stops
		// the start, named.
		declared, err := event.LoadSchemaDir(s.registry, cfg.SchemaDir)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, config.EnvSchemaDir)
		}
		for _, dt := range declared {
			attrs := []any{"type", dt.Type, "versions", len(dt.Versions)}
			if dt.Personal != nil {
				attrs = append(attrs, "data_subject", dt.Personal.DataSubject, "personal", dt.Personal.Fields)
			}
			s.Logger.Info("declared type from "+cfg.SchemaDir, attrs...)
		}
	}
	s.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector(buildinfo.Read()))
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	if err := s.openStore(ctx, opts); err != nil {
		return nil, err
	}
	if !opts.StoreOnly {
		if err := s.openBroker(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.openKeyring(ctx, opts); err != nil {
		return nil, err
	}
	s.Bus = eventbus.New(s.driver, eventbus.Config{
		Registry:          s.registry,
		Source:            opts.Source,
		OnCommit:          s.wakeRelay,
		AllowUnknownTypes: cfg.AllowUnknownTypes,
	})
	if opts.StoreOnly {
		ok = true
		return s, nil
	}
	relayCfg := opts.Relay
	relayCfg.Exchange = cfg.Exchange
	relayCfg.Logger = s.Logger
	if relayCfg.Partitions == 0 {
		relayCfg.Partitions = cfg.RelayPartitions
	}
	if relayCfg.Metrics == nil {
		relayCfg.Metrics = relay.NewMetrics()
		if err := relayCfg.Metrics.Register(s.Metrics); err != nil {
			return nil, fmt.Errorf("service: relay metrics: %w", err)
		}
	}
	if relayCfg.Name != "" {
		s.relayName = relayCfg.Name
	}
	s.Metrics.MustRegister(relay.NewStatusCollector(s.Store, s.relayName))
	relayBroker := s.Broker
	if s.memory != nil {
		// Messages in the in-process broker die with the process: the
		// relay's checkpoint may only pass an event once consumers have
		// settled it, so that a restart publishes the rest again.
		relayBroker = s.memory.DeliveryConfirmed()
		if relayCfg.DrainTimeout == 0 {
			// Waiting for in-process consumers that are stopping too
			// would only delay the stop: what they did not settle is
			// published again at the next start.
			relayCfg.DrainTimeout = 200 * time.Millisecond
		}
	}
	var err error
	if s.relay, err = relay.New(s.Store, relayBroker, relayCfg); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Service) openStore(ctx context.Context, opts Config) error {
	if s.Config.Embedded() {
		return s.openEmbeddedStore(ctx, opts)
	}
	st, err := postgres.Open(ctx, s.Config.DatabaseURL)
	if err != nil {
		return postgresError(s.Config.DatabaseURL, "open", err)
	}
	s.pg, s.Store, s.raw, s.driver = st, st, st, postgresDriver(st)
	s.closers = append(s.closers, st.Close)
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = st.Ping(pingCtx)
	cancel()
	if err != nil {
		return postgresError(s.Config.DatabaseURL, "reach", err)
	}
	if opts.Migrate {
		if err := st.Migrate(ctx); err != nil {
			return postgresError(s.Config.DatabaseURL, "migrate", err)
		}
	}
	cur, latest, err := st.SchemaVersion(ctx)
	if err != nil {
		return postgresError(s.Config.DatabaseURL, "read the schema version of", err)
	}
	if cur < latest {
		return fmt.Errorf("the PostgreSQL schema is at version %d, this build needs %d: run `eventbus migrate` (or serve --migrate)", cur, latest)
	}
	s.Logger.Info("store: PostgreSQL", "url", config.Redact(s.Config.DatabaseURL), "schema_version", cur)
	return nil
}

func (s *Service) openBroker(ctx context.Context) error {
	if s.Config.InProcessBroker() {
		b := memory.New()
		s.Broker, s.memory = b, b
		s.closers = append(s.closers, b.Close)
		s.Logger.Info("embedded default: in-process broker (set " + config.EnvAMQPURL + " for RabbitMQ); " +
			"workers must run in this process; messages not yet delivered are lost if it dies, " +
			"and the relay publishes them again from the store when it restarts")
		return nil
	}
	b, err := rabbitmq.Open(ctx, strings.Join(s.Config.AMQPURLs, ","), rabbitmq.Config{Logger: s.Logger})
	if err != nil {
		return err
	}
	s.Broker = b
	s.closers = append(s.closers, b.Close)
	redacted := make([]string, len(s.Config.AMQPURLs))
	for i, u := range s.Config.AMQPURLs {
		redacted[i] = config.Redact(u)
	}
	s.Logger.Info("broker: RabbitMQ", "nodes", redacted, "exchange", s.Config.Exchange)
	return nil
}

// wakeRelay is the bus's commit hook: a relay in this process reads the
// store at once instead of at its next poll.
func (s *Service) wakeRelay() {
	if r := s.relayRef.Load(); r != nil {
		r.Wake()
	}
}

// Postgres returns the PostgreSQL store, when that is the store.
func (s *Service) Postgres() (*postgres.Store, bool) { return s.pg, s.pg != nil }

// SQLite returns the embedded store, when that is the store.
func (s *Service) SQLite() (*sqlite.Store, bool) { return s.lite, s.lite != nil }

// Inbox returns the store's consumer inbox, for consume.Config.Inbox. Its
// transaction type is Tx, whichever the store: OnTx handlers of a service
// take a Tx.
func (s *Service) Inbox() consume.Inbox { return consume.NewInbox(s.driver) }

// Registry returns the event types the service accepts.
func (s *Service) Registry() *event.Registry { return s.registry }

// SchemaVersion returns the version the store's schema is at, and the
// newest this build knows.
func (s *Service) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	return s.raw.(store.Migrator).SchemaVersion(ctx)
}

// Relay returns the service's relay.
func (s *Service) Relay() *relay.Relay { return s.relay }

// Status reports the relay's state.
func (s *Service) Status(ctx context.Context) (relay.Status, error) {
	return relay.ReadStatus(ctx, s.Store, s.relayName, time.Minute)
}

// Handler returns the HTTP API on the service.
func (s *Service) Handler() (http.Handler, error) {
	if s.Broker == nil {
		return nil, errors.New("service: the HTTP API needs the broker; open the service without StoreOnly")
	}
	return httpapi.New(httpapi.Config{
		Bus:    s.Bus,
		Reader: s.Store,
		Status: func(ctx context.Context) (wire.Status, error) {
			st, err := s.Status(ctx)
			return WireStatus(st), err
		},
		Parked:  HTTPParked(s.Store, s.relayName),
		Metrics: s.Metrics,
		Tokens:  s.Config.Tokens,
		Console: console.Handler(),
		Logger:  s.Logger,
		// The HTTP API bounds each request by it; 0 is its default.
		RequestTimeout: s.Config.RequestTimeout,
		Ready: []httpapi.Check{
			{Name: "store", Check: s.Store.Ping},
			{Name: "broker", Check: s.Broker.Ping},
		},
		Admin: s.httpAdmin(),
	})
}

// RunOptions says which parts Run runs.
type RunOptions struct {
	HTTP  bool
	Relay bool
	// Probes serves GET /healthz, /readyz and /metrics alone on the HTTP
	// address when HTTP is off: `serve --relay-only` sets it.
	Probes bool
	// Ready, if set, is told the HTTP API's address once it listens.
	Ready func(addr string)
	// ShutdownTimeout bounds the stop: Run returns within it once ctx
	// ends. Default: the configuration's (EVENTBUS_SHUTDOWN_TIMEOUT), else
	// 15s.
	ShutdownTimeout time.Duration
}

// Run runs the HTTP API and the relay, as opts says, until ctx ends or one
// of them fails, then stops them gracefully: the server finishes the
// requests in flight, the relay waits for its confirms, saves its checkpoint
// and hands its lease over.
//
// With the in-process broker, start the process's consumers first and wait
// for their Ready: its queues exist only once they are declared, and the
// relay's events reach no queue before that.
func (s *Service) Run(ctx context.Context, opts RunOptions) error {
	if !opts.HTTP && !opts.Relay {
		return errors.New("service: nothing to run")
	}
	if s.relay == nil {
		return errors.New("service: opened StoreOnly, it cannot run")
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = s.Config.ShutdownTimeout
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = config.DefaultShutdownTimeout
	}
	// One part failing stops the other.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	running := 0
	if opts.HTTP {
		h, err := s.Handler()
		if err != nil {
			return err
		}
		if !s.Config.AuthEnabled() {
			s.Logger.Warn("HTTP API auth is OFF: anyone who can reach " + s.Config.HTTPAddr +
				" can publish and read events; set " + config.EnvAPITokens + " to require tokens")
		}
		ln, err := net.Listen("tcp", s.Config.HTTPAddr)
		if err != nil {
			return fmt.Errorf("cannot listen on %s: %w (is another process using it? set %s or --%s)",
				s.Config.HTTPAddr, err, config.EnvHTTPAddr, config.FlagHTTPAddr)
		}
		srv := httpapi.NewServer(s.Config.HTTPAddr, h)
		// The server's own complaints (TLS handshakes, malformed requests)
		// go to the structured log too.
		srv.ErrorLog = slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn)
		if s.Config.AllowUnknownTypes {
			s.Logger.Warn("events of types neither registered nor declared are stored as they come (" + config.EnvAllowUnknownTypes +
				"=true): nothing checks their data; eventbus_http_events_stored_by_origin_total{origin=\"unknown\"} counts them")
		}
		s.Logger.Info("HTTP API listening", "addr", ln.Addr().String())
		if opts.Ready != nil {
			opts.Ready(ln.Addr().String())
		}
		running++
		shutDown := make(chan struct{})
		go func() {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				// Serve returns as soon as Shutdown begins; the requests in
				// flight still need the store and the broker, which the
				// caller closes after Run.
				<-shutDown
				err = nil
			}
			errc <- err
		}()
		go func() {
			defer close(shutDown)
			<-runCtx.Done()
			// Requests in flight get most of the shutdown timeout (each is
			// bounded by the request timeout anyway); streams and replays
			// still running then are cut.
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.ShutdownTimeout*3/4)
			defer cancel()
			if err := srv.Shutdown(shutdownCtx); err != nil {
				s.Logger.Warn("HTTP API did not stop cleanly", "err", err)
				_ = srv.Close()
			}
		}()
	}
	if opts.Probes && !opts.HTTP {
		defer s.serveProbes(runCtx, ctx, opts)()
	}
	if opts.Relay {
		s.relayRef.Store(s.relay)
		defer s.relayRef.Store(nil)
		running++
		go func() { errc <- s.relay.Run(runCtx) }()
	}
	// Once stopping, the parts get ShutdownTimeout: a store or a broker
	// that does not answer must not hold the process (DESIGN "Bounded
	// answers"). A part still running then is left behind.
	var errs []error
	stopping := runCtx.Done()
	var deadline <-chan time.Time
	for stopped := 0; stopped < running; {
		select {
		case err := <-errc:
			stopped++
			if err != nil {
				s.Logger.Error("service stopping after a failure", "err", err)
				errs = append(errs, err)
				stop()
			}
		case <-stopping:
			stopping = nil
			t := time.NewTimer(opts.ShutdownTimeout)
			defer t.Stop()
			deadline = t.C
		case <-deadline:
			err := fmt.Errorf("service: %d of %d parts (HTTP API, relay) still running after the shutdown timeout of %s "+
				"(is the store or the broker answering?); stopping without them", running-stopped, running, opts.ShutdownTimeout)
			s.Logger.Error(err.Error())
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(errs...)
}

// serveProbes serves GET /healthz, /readyz and /metrics on the HTTP
// address while the relay runs alone (DESIGN "Partitions"), until runCtx
// ends or the returned func is called, which waits until they stop. The
// relay is the process's work: when the address is taken, it says so and
// the relay runs on without them.
func (s *Service) serveProbes(runCtx, ctx context.Context, opts RunOptions) (stop func()) {
	h, err := httpapi.Probes(httpapi.ProbesConfig{Metrics: s.Metrics, Logger: s.Logger, Ready: []httpapi.Check{
		{Name: "store", Check: s.Store.Ping},
		{Name: "broker", Check: s.Broker.Ping},
	}})
	if err != nil {
		s.Logger.Warn("relay-only: no /healthz, /readyz and /metrics", "err", err)
		return func() {}
	}
	ln, err := net.Listen("tcp", s.Config.HTTPAddr)
	if err != nil {
		s.Logger.Warn(fmt.Sprintf("relay-only: cannot serve /healthz, /readyz and /metrics on %s (set %s or --%s to a free address); the relay runs without them",
			s.Config.HTTPAddr, config.EnvHTTPAddr, config.FlagHTTPAddr), "err", err)
		return func() {}
	}
	srv := httpapi.NewServer(s.Config.HTTPAddr, h)
	srv.ErrorLog = slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn)
	s.Logger.Info("relay-only: /healthz, /readyz and /metrics listening", "addr", ln.Addr().String())
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	stopNow := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-runCtx.Done():
		case <-stopNow:
		}
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			_ = srv.Close()
		}
		<-served
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stopNow) })
		<-stopped
	}
}

// Close closes the broker and the store.
func (s *Service) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}
