package chaos

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a subprocess the harness starts, SIGKILLs and restarts: serve, the
// second relay, a consumer. While it is wanted, a supervisor restarts it
// when it exits on its own (as systemd or Kubernetes would), and counts the
// exit.
type proc struct {
	name string
	path string
	args []string
	// env returns the environment of each new incarnation.
	env    func() []string
	stdout io.Writer // nil: discarded
	logs   *logSink

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current incarnation has exited
	want     bool
	starts   int
	kills    int
	exits    []string // exits nobody asked for, with their status
	stopping chan struct{}
	wg       sync.WaitGroup
}

func newProc(t testing.TB, name, path string, args []string, env func() []string) *proc {
	p := &proc{name: name, path: path, args: args, env: env, stopping: make(chan struct{}),
		logs: newLogSink(filepath.Join(t.TempDir(), name+".log"))}
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		p.logs.close()
	})
	return p
}

// start starts the process, and keeps it running until kill or stop.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.want = true
	if p.cmd != nil {
		return nil // running
	}
	return p.launchLocked()
}

func (p *proc) launchLocked() error {
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env()
	cmd.Stdout = p.stdout
	cmd.Stderr = p.logs
	cmd.WaitDelay = 5 * time.Second
	// A process outlives no test binary that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.starts++
	p.logs.mark(fmt.Sprintf("=== %s start %d", p.name, p.starts))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd = cmd
	done := make(chan struct{})
	p.done = done
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.cmd = nil
		close(done)
		if !p.want {
			return
		}
		p.exits = append(p.exits, fmt.Sprintf("%s exited on its own (%v); last log lines:\n%s", p.name, err, p.logs.tail(8)))
		p.wg.Add(1)
		go p.restartSoon()
	}()
	return nil
}

// restartSoon restarts the process after an exit nobody asked for.
func (p *proc) restartSoon() {
	defer p.wg.Done()
	select {
	case <-p.stopping:
		return
	case <-time.After(300 * time.Millisecond):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want && p.cmd == nil {
		if err := p.launchLocked(); err != nil {
			p.exits = append(p.exits, err.Error())
		}
	}
}

// kill SIGKILLs the process and waits for it to die. It stays down until
// start. It reports false when the process was not running.
func (p *proc) kill() bool {
	p.mu.Lock()
	p.want = false
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return false
	}
	p.kills++
	_ = cmd.Process.Signal(syscall.SIGKILL)
	p.mu.Unlock()
	<-done
	return true
}

// crash asks the process to kill itself with sig, and SIGKILLs it if it has
// not died within timeout. It stays down until start. selfKilled reports
// whether it died of its own hand; ok is false when it was not running.
func (p *proc) crash(sig os.Signal, timeout time.Duration) (selfKilled, ok bool) {
	p.mu.Lock()
	p.want = false
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return false, false
	}
	p.kills++
	_ = cmd.Process.Signal(sig)
	p.mu.Unlock()
	select {
	case <-done:
		return true, true
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return false, true
	}
}

// stop asks the process to stop (SIGTERM), waits up to timeout, then kills it.
func (p *proc) stop(timeout time.Duration) {
	p.mu.Lock()
	p.want = false
	select {
	case <-p.stopping:
	default:
		close(p.stopping)
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(timeout):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	p.wg.Wait()
}

// pid returns the running incarnation's process id, or 0.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// unexpectedExits returns the exits nobody asked for.
func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.exits...)
}

func (p *proc) counts() (starts, kills int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts, p.kills
}

// logSink keeps a process's stderr in a file, remembers the last lines, and
// watches for panics and data races.
type logSink struct {
	mu      sync.Mutex
	f       *os.File
	partial []byte
	last    []string
	alarms  []string // lines that say the process panicked or raced
	errors  []string // the first lines logged at level ERROR, but for 503 answers
	nErrors int
}

func newLogSink(path string) *logSink {
	f, err := os.Create(path)
	if err != nil {
		f = nil
	}
	return &logSink{f: f}
}

func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		_, _ = s.f.Write(b)
	}
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.lineLocked(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 {
		s.lineLocked(string(s.partial))
		s.partial = nil
	}
	return len(b), nil
}

func (s *logSink) lineLocked(line string) {
	if len(line) > 600 {
		line = line[:600] + "…"
	}
	s.last = append(s.last, line)
	if len(s.last) > 200 {
		s.last = s.last[len(s.last)-100:]
	}
	// 503 answers are the store being cut off, as planned.
	if strings.Contains(line, `"level":"ERROR"`) && !strings.Contains(line, `"status":503`) {
		s.nErrors++
		if len(s.errors) < 5 {
			s.errors = append(s.errors, line)
		}
	}
	if strings.HasPrefix(line, "panic:") || strings.Contains(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "fatal error:") {
		if len(s.alarms) < 20 {
			s.alarms = append(s.alarms, line)
		}
	}
}

func (s *logSink) mark(line string) {
	_, _ = s.Write([]byte(line + "\n"))
}

// tail returns the last n lines.
func (s *logSink) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := max(0, len(s.last)-n)
	return "    " + strings.Join(s.last[from:], "\n    ")
}

func (s *logSink) alarmLines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.alarms...)
}

// errorLines returns how many lines were logged at level ERROR, and the
// first of them.
func (s *logSink) errorLines() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nErrors, append([]string(nil), s.errors...)
}

func (s *logSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv is this process's environment without the EVENTBUS_ variables
// that configure the service, so that a developer's settings cannot leak
// into the processes the harness starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "EVENTBUS_DATABASE_URL", "EVENTBUS_DATA_DIR", "EVENTBUS_AMQP_URL", "EVENTBUS_EXCHANGE",
			"EVENTBUS_HTTP_ADDR", "EVENTBUS_API_TOKENS", "EVENTBUS_MASTER_KEY", "EVENTBUS_MASTER_KEY_FILE":
			continue
		}
		env = append(env, kv)
	}
	return env
}
