package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/testenv"
)

// The binaries under test, built once by TestMain.
var (
	eventbusBin    string
	embedworkerBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventbus-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	eventbusBin = filepath.Join(dir, "eventbus")
	embedworkerBin = filepath.Join(dir, "embedworker")
	for bin, pkg := range map[string]string{eventbusBin: ".", embedworkerBin: "./testdata/embedworker"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(testenv.FaultProxyLeaks...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// baseEnv is the environment every run starts from: PATH and HOME, and
// nothing of the EVENTBUS_* the developer's shell may hold.
//
// It raises the request timeout from its 5 s default: the commands' bounds
// have tests of their own (bounded_test.go, which set theirs), and on a
// machine loaded by parallel test binaries a PostgreSQL that answers in
// 6 s is slow, not silent.
func baseEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "EVENTBUS_REQUEST_TIMEOUT=30s"}
}

// result is the outcome of one command run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs the eventbus binary in dir with env (added to baseEnv) and args,
// and waits for it, up to a minute.
func runCLI(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eventbusBin, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("eventbus %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// startLines starts the binary in dir with env (added to baseEnv) and
// args, and returns it with its standard output line by line; the channel
// closes when the output ends. The process is killed when the test ends.
func startLines(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(eventbusBin, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// mustRunCLI runs the binary and fails the test unless it exits 0.
func mustRunCLI(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	r := runCLI(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("eventbus %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// process is a long-running program under test: eventbus serve, or the
// embedworker.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu    sync.Mutex
	logs  bytes.Buffer // stderr, whole
	lines []map[string]any
	addr  string // the HTTP API's, once it listens
}

// start starts bin (eventbus, with args, or the embedworker) in dir with env
// and waits until its HTTP API listens, or its relay leads when it runs no
// HTTP API. It stops the process, if still running, when the test ends.
func start(t *testing.T, bin, dir string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, done: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.lines = append(p.lines, line)
				if line["msg"] == "HTTP API listening" {
					p.addr, _ = line["addr"].(string)
				}
			}
			p.mu.Unlock()
		}
	}()
	go func() {
		<-scanned // Wait must not close the pipe before it is read to the end
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	p.waitLog(func(line map[string]any) bool {
		return line["msg"] == "HTTP API listening" || line["msg"] == "relay is the leader"
	}, "the service to start")
	return p
}

// waitLog waits until a log line satisfies match.
func (p *process) waitLog(match func(map[string]any) bool, what string) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for seen := 0; ; {
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("waiting for %s: the process exited (%v); its log:\n%s", what, p.err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s: timed out; the log:\n%s", what, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// log returns everything the process wrote to stderr so far.
func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// url returns the address of the process's HTTP API.
func (p *process) url() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr
}

// stop sends sig and waits for the process to exit; it returns the exit
// code.
func (p *process) stop(sig syscall.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("still running 30 s after %v; its log:\n%s", sig, p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// call sends one HTTP request to the process's API and returns the status
// and body.
func (p *process) call(method, path, token, body string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url()+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// quizJSON is the data of a valid quiz.submitted event.
func quizJSON(score int) string {
	return fmt.Sprintf(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":%d}`, score)
}

// eventIDs returns the IDs of the CloudEvents JSON lines in out.
func eventIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a CloudEvent line: %q: %v", line, err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}
