// Package pgdev runs a throw-away PostgreSQL cluster for `tributary dev`
// and tests: its own temporary directory and port, wal_level=logical,
// removed on Stop. The server dies with the process that started it, and a
// start sweeps directories left behind by processes that were killed.
package pgdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres means no PostgreSQL binaries were found.
var ErrNoPostgres = errors.New("no initdb found on PATH or in /usr/lib/postgresql/*/bin")

// User and Database of the throw-away cluster.
const (
	User     = "tributary"
	Database = "tributary"
)

// Cluster is a running throw-away cluster.
type Cluster struct {
	DSN  string
	dir  string
	cmd  *exec.Cmd
	done chan error
	log  *slog.Logger
}

// FindBinDir returns the directory holding initdb and postgres.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return verOf(dirs[i]) > verOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func verOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start initialises and starts a cluster on a free port. settings are extra
// server settings ("wal_level=replica") applied after the defaults.
// PostgreSQL refuses to run as root, so as root the cluster runs as the
// "postgres" system user.
func Start(ctx context.Context, log *slog.Logger, settings ...string) (*Cluster, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	sweep(log)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, log: log, done: make(chan error, 1)}
	cred, err := credential(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", User, "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical", "-c", "max_replication_slots=10",
		"-c", "max_wal_senders=10", "-c", "fsync=off", "-c", "synchronous_commit=off"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	c.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	// Its own process group keeps a terminal's Ctrl-C from reaching it before
	// we stop it; Pdeathsig takes it down if we die without stopping it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() { c.done <- c.cmd.Wait(); _ = logf.Close() }()
	c.DSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", User, port)
	if err := c.waitReady(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		c.Stop()
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+Database); err != nil {
		c.Stop()
		return nil, fmt.Errorf("create database: %w", err)
	}
	c.DSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, port, Database)
	log.Info("throw-away postgres started", "dsn", c.DSN, "dir", dir)
	return c, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.DSN)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case werr := <-c.done:
			logs, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
			return fmt.Errorf("postgres exited: %v: %s", werr, logs)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not accepting connections after 30s: %w", err)
		}
	}
}

// Stop shuts the cluster down (fast shutdown) and removes its directory.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.log.Warn("remove postgres dir", "dir", c.dir, "err", err)
	}
}

func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root and no \"postgres\" system user to run PostgreSQL as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

const dirPrefix = "tributary-pg-"

// sweep removes the directories of clusters whose server is gone (their
// starter was killed before it could clean up).
func sweep(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		pidFile, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid"))
		if err == nil {
			if pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0]); err == nil && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		info, err := os.Stat(d)
		if err != nil || time.Since(info.ModTime()) < time.Minute {
			continue // being set up right now
		}
		if err := os.RemoveAll(d); err == nil && log != nil {
			log.Info("removed a stale throw-away postgres directory", "dir", d)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
