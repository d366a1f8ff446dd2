package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// FaultProxy is a TCP proxy between the bus and a server that cuts
// connections and adds latency on demand. It runs Toxiproxy in-process.
type FaultProxy struct {
	mu    sync.Mutex
	proxy *toxiproxy.Proxy
	cuts  int
}

// NewFaultProxy starts a proxy to upstream (host:port) on a free local
// port. It stops when the test ends.
func NewFaultProxy(t testing.TB, upstream string) *FaultProxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, Name("proxy"), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: start fault proxy to %s: %v", upstream, err)
	}
	fp := &FaultProxy{proxy: p}
	t.Cleanup(fp.Stop)
	return fp
}

// Addr returns the proxy's listening address, host:port.
func (p *FaultProxy) Addr() string {
	// Toxiproxy rewrites Listen each time the proxy starts, which Cut and
	// Up do under mu.
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proxy.Listen
}

// Cut closes every open connection through the proxy. New connections are
// accepted again at once, as after a network blip.
func (p *FaultProxy) Cut() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proxy.Stop()
	p.cuts++
	// The port was just released; another process could take it in between,
	// so retry briefly rather than fail the test on a rare race.
	var err error
	for i := 0; i < 50; i++ {
		if err = p.proxy.Start(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("testenv: restart fault proxy: %w", err)
}

// Down closes every connection and refuses new ones until Up.
func (p *FaultProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proxy.Stop()
	p.cuts++
}

// Up accepts connections again after Down.
func (p *FaultProxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	for i := 0; i < 50; i++ {
		if err = p.proxy.Start(); err == nil || err == toxiproxy.ErrProxyAlreadyStarted {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("testenv: restart fault proxy: %w", err)
}

// Cuts returns how many times connections were cut.
func (p *FaultProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// AddLatency delays data in both directions by latency, give or take jitter.
func (p *FaultProxy) AddLatency(latency, jitter time.Duration) error {
	for _, stream := range []string{"upstream", "downstream"} {
		spec := fmt.Sprintf(`{"name":"latency_%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":%d}}`,
			stream, stream, latency.Milliseconds(), jitter.Milliseconds())
		if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			return fmt.Errorf("testenv: add latency: %w", err)
		}
	}
	return nil
}

// Blackhole makes the server fall silent: the proxy keeps accepting
// connections and data, and forwards nothing either way, until
// ClearFaults. This is a server that hangs, or a network that drops
// packets: without deadlines, a client waits for ever.
func (p *FaultProxy) Blackhole() error {
	for _, stream := range []string{"upstream", "downstream"} {
		spec := fmt.Sprintf(`{"name":"blackhole_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, stream, stream)
		if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			return fmt.Errorf("testenv: blackhole: %w", err)
		}
	}
	return nil
}

// ClearFaults removes added latency and blackholes.
func (p *FaultProxy) ClearFaults() {
	p.proxy.Toxics.ResetToxics(context.Background())
}

// Stop closes the proxy and every connection through it.
func (p *FaultProxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proxy.Stop()
}

// FaultProxyLeaks are the goleak options for test packages that cut
// connections through a FaultProxy. When a cut stops a link while data is in
// flight, Toxiproxy leaves goroutines blocked for ever: its link's reader
// sending to a toxic that no longer reads, or a toxic sending to a writer
// that is gone. They are the proxy's, not the bus's.
var FaultProxyLeaks = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*TimeoutToxic).Pipe"),
}
