// Package testutil holds the real peers tests run against: the embedded
// Kafka broker, a PostgreSQL server, and bounded waiting.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/libs/pgdev"
)

// PostgresEnv names the DSN of the PostgreSQL server tests use.
const PostgresEnv = "TRIBUTARY_TEST_POSTGRES_DSN"

// DefaultPostgresDSN is what .ci/run sets up.
const DefaultPostgresDSN = "postgres://tributary:tributary@127.0.0.1:5432/tributary"

// PostgresDSN returns the DSN of a reachable PostgreSQL server. When none is
// reachable the test is skipped with a message saying how to get one, except
// under CI (CI=true), where it fails: CI must run these tests.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		dsn = DefaultPostgresDSN
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("no PostgreSQL at %s (%v): set %s to a server with wal_level=logical, or run the PostgreSQL part of .ci/run", host, err, PostgresEnv)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = c.Close()
	return dsn
}

// Kafka starts an embedded broker on a free port for the test and returns its address.
func Kafka(t testing.TB, partitions int) string {
	t.Helper()
	b, err := kafkabroker.Start(kafkabroker.Config{Partitions: partitions}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// Eventually polls cond every 20ms until it returns nil or timeout passes,
// then fails the test with cond's last error and what was awaited.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Context returns a context cancelled when the test ends or after timeout.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// ThrowawayPostgres starts a private PostgreSQL cluster for the test, with
// extra server settings (for example "wal_level=replica"), and returns its
// DSN; the cluster is removed when the test ends. Without PostgreSQL
// binaries the test is skipped, except under CI, where it fails.
func ThrowawayPostgres(t testing.TB, settings ...string) string {
	t.Helper()
	c, err := pgdev.Start(context.Background(), nil, settings...)
	if err != nil {
		msg := fmt.Sprintf("throw-away PostgreSQL: %v", err)
		if errors.Is(err, pgdev.ErrNoPostgres) && os.Getenv("CI") == "" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	t.Cleanup(c.Stop)
	return c.DSN
}

// Service is a built service, as the services' New functions return them.
type Service interface {
	Run(ctx context.Context) error
	AdminAddr() string
}

// RunService runs svc until the test ends, fails the test if Run returns an
// error or does not stop within 20s of cancellation, and waits until its
// /readyz answers 200.
func RunService(t testing.TB, name string, svc Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s run: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s", name)
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	Eventually(t, 30*time.Second, name+" ready", func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("%s stopped: %v", name, err)
		default:
		}
		resp, err := client.Get("http://" + svc.AdminAddr() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
}
