package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinDir holds the PostgreSQL server binaries StartPostgresPair
// runs: initdb, pg_basebackup, pg_ctl and postgres.
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// postgresOSUser is the operating-system user the PostgreSQL binaries run
// as: they refuse to run as root.
const postgresOSUser = "postgres"

// postgresStartup bounds each step of setting up a pair: initdb, a server
// accepting connections, the base backup, the standby streaming.
const postgresStartup = 90 * time.Second

// PostgresPair is a PostgreSQL primary and a streaming standby of one
// test's own, beside the shared server: data directories in a temporary
// directory, ports of their own, trust authentication for the postgres
// user. Both stop when the test ends.
type PostgresPair struct {
	Primary, Standby *PostgresServer
	// URL lists both servers, primary first, with
	// target_session_attrs=read-write: a client of it finds whichever is
	// the primary.
	URL string
}

// PostgresServer is one server of a PostgresPair.
type PostgresServer struct {
	// Name is "primary" or "standby".
	Name string
	// URL is the server's own URL (database postgres, user postgres).
	URL  string
	Port int
	dir  string // the data directory
	cred *syscall.Credential

	pid    int
	exited chan struct{}
	out    *syncBuffer
}

// PostgresPairOptions configures StartPostgresPair.
type PostgresPairOptions struct {
	// Synchronous makes the standby a synchronous one
	// (synchronous_standby_names = '*' on the primary): a commit returns
	// only once the standby has flushed it.
	Synchronous bool
}

// StartPostgresPair makes a primary with initdb, a standby with
// pg_basebackup from it, starts both and waits until the standby streams
// (and, with opt.Synchronous, is the synchronous one). Without the
// PostgreSQL binaries or the postgres user the test skips, loudly, or fails
// when EVENTBUS_REQUIRE_SERVICES=1.
func StartPostgresPair(t testing.TB, opt PostgresPairOptions) *PostgresPair {
	t.Helper()
	for _, bin := range []string{"initdb", "pg_basebackup", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(PostgresBinDir, bin)); err != nil {
			missing(t, "PostgreSQL server binaries", err.Error())
		}
	}
	cred, err := postgresCredential()
	if err != nil {
		missing(t, "PostgreSQL server binaries", err.Error())
	}
	// t.TempDir's parents are private to root; the servers need a
	// directory of the postgres user's.
	base, err := os.MkdirTemp("", "eventbus-pg-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*postgresStartup)
	defer cancel()

	primary := &PostgresServer{Name: "primary", Port: freePort(t), dir: filepath.Join(base, "primary"), cred: cred}
	standby := &PostgresServer{Name: "standby", Port: freePort(t), dir: filepath.Join(base, "standby"), cred: cred}
	if out, err := runAsPostgres(ctx, cred, base, "initdb", "--auth=trust", "--username=postgres", "--no-sync",
		"--encoding=UTF8", "--locale=C", "-D", primary.dir); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	sync := "''"
	if opt.Synchronous {
		sync = "'*'"
	}
	// fsync = off: the tests crash servers, never the machine, so the
	// kernel keeps what was written; it spares the loaded test machine.
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 4
max_connections = 60
shared_buffers = 32MB
fsync = off
full_page_writes = off
synchronous_standby_names = %s
`, primary.Port, base, sync)
	if err := appendFile(filepath.Join(primary.dir, "postgresql.conf"), conf); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := appendFile(filepath.Join(primary.dir, "pg_hba.conf"), "\nhost replication postgres 127.0.0.1/32 trust\n"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	primary.start(t, ctx)

	if out, err := runAsPostgres(ctx, cred, base, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", standby.dir, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"); err != nil {
		t.Fatalf("testenv: pg_basebackup: %v\n%s", err, out)
	}
	// The standby copied the primary's configuration. Once promoted it has
	// no standby of its own: synchronous_standby_names would make every
	// commit wait for ever.
	if err := appendFile(filepath.Join(standby.dir, "postgresql.conf"),
		fmt.Sprintf("\nport = %d\nsynchronous_standby_names = ''\n", standby.Port)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	standby.start(t, ctx)

	p := &PostgresPair{Primary: primary, Standby: standby,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write",
			primary.Port, standby.Port)}
	want := "streaming"
	query := `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'`
	if opt.Synchronous {
		query += ` AND sync_state = 'sync'`
		want = "streaming synchronously"
	}
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		var n int
		err := primary.QueryRow(ctx, query, &n)
		return n == 1, err
	})
	if err != nil {
		t.Fatalf("testenv: the standby is not %s: %v\n%s", want, err, tail(standby.out.String(), 3000))
	}
	return p
}

// postgresCredential is the postgres user's, for running the binaries.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup(postgresOSUser)
	if err != nil {
		return nil, fmt.Errorf("the PostgreSQL binaries must run as the %s user: %w", postgresOSUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// runAsPostgres runs one of the PostgreSQL binaries as the postgres user,
// as runuser would, and returns its output.
func runAsPostgres(ctx context.Context, cred *syscall.Credential, dir, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(PostgresBinDir, bin), args...)
	cmd.Dir = dir
	cmd.Env = postgresEnv(dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// postgresEnv is the environment of the PostgreSQL binaries: this
// process's, without the PG variables that would point them elsewhere.
func postgresEnv(home string) []string {
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// start runs the server (postgres itself, a child of the test, in a
// process group of its own) and waits until it accepts connections. It
// stops when the test ends.
func (s *PostgresServer) start(t testing.TB, ctx context.Context) {
	t.Helper()
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	s.exited = make(chan struct{})
	s.out = &syncBuffer{}
	cmd := exec.Command(filepath.Join(PostgresBinDir, "postgres"), "-D", s.dir)
	cmd.Dir = filepath.Dir(s.dir)
	cmd.Env = postgresEnv(cmd.Dir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// No server outlives a test binary that dies; the group holds its
	// backends, so that nothing of it is left behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start the PostgreSQL %s: %v", s.Name, err)
	}
	s.pid = cmd.Process.Pid
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.Stop(syscall.SIGQUIT) })
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		select {
		case <-s.exited:
			return false, errors.New("it exited")
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		// Accepting TCP is not accepting sessions: a starting server
		// answers "the database system is starting up".
		var one int
		return s.QueryRow(ctx, "SELECT 1", &one) == nil, nil
	})
	if err != nil {
		t.Fatalf("testenv: the PostgreSQL %s does not accept connections: %v\n%s", s.Name, err, tail(s.out.String(), 3000))
	}
}

// Stop sends the server's postmaster sig and waits until it has exited:
// SIGINT is pg_ctl's fast shutdown (clients are disconnected, and a primary
// waits until its standbys have received all its WAL), SIGQUIT its
// immediate shutdown, as a crash. Whatever is left of the process group is
// then killed. Stopping a server that has exited does nothing.
func (s *PostgresServer) Stop(sig syscall.Signal) {
	if s.exited == nil {
		return
	}
	select {
	case <-s.exited:
		return // and reaped: the pid may be another process's by now
	default:
	}
	_ = syscall.Kill(s.pid, sig)
	select {
	case <-s.exited:
	case <-time.After(postgresStartup):
	}
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.exited
}

// Promote promotes a standby (pg_ctl promote) and waits until it accepts
// writes: pg_is_in_recovery() is false.
func (s *PostgresServer) Promote(ctx context.Context) error {
	if out, err := runAsPostgres(ctx, s.cred, filepath.Dir(s.dir), "pg_ctl", "promote", "-D", s.dir, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl promote the %s: %w\n%s", s.Name, err, out)
	}
	ctx, cancel := context.WithTimeout(ctx, postgresStartup)
	defer cancel()
	return poll(ctx, func(ctx context.Context) (bool, error) {
		var inRecovery bool
		err := s.QueryRow(ctx, "SELECT pg_is_in_recovery()", &inRecovery)
		return err == nil && !inRecovery, nil
	})
}

// QueryRow runs a one-row query on a connection of its own and scans the
// row into dest.
func (s *PostgresServer) QueryRow(ctx context.Context, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// Log returns the last lines the server wrote.
func (s *PostgresServer) Log() string { return tail(s.out.String(), 3000) }

// poll calls cond every 50 ms until it reports true or fails, or ctx ends.
func poll(ctx context.Context, cond func(context.Context) (bool, error)) error {
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
