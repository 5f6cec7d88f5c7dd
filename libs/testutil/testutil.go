// Package testutil holds the real peers tests run against: the embedded
// Kafka broker, a PostgreSQL server, and bounded waiting.
package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

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

// PythonEnv names the Python interpreter tests run real Python clients
// with (DuckDB, pyarrow); scripts/python-test-env.sh makes one.
const PythonEnv = "TRIBUTARY_TEST_PYTHON"

// Python returns the interpreter named by TRIBUTARY_TEST_PYTHON. When it is
// unset the test is skipped with a message saying how to get one, except
// under CI (CI=true), where it fails: CI must run these tests.
func Python(t testing.TB) string {
	t.Helper()
	py := os.Getenv(PythonEnv)
	if py == "" {
		msg := fmt.Sprintf("%s is not set: run export %s=$(scripts/python-test-env.sh) from the repository root", PythonEnv, PythonEnv)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("%s: %v", PythonEnv, err)
	}
	return py
}

// Kafka starts an embedded broker on a free port for the test and returns
// its address; auto-created topics get partitions partitions. When KafkaEnv
// names a real cluster it returns that cluster's first broker instead, reset
// for the test; its auto-created topics then have the cluster's partition
// count (see realKafka).
func Kafka(t testing.TB, partitions int) string {
	t.Helper()
	if brokers := RealKafka(); len(brokers) > 0 {
		return realKafka(t, brokers)
	}
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

// childBrokerEnv marks a re-executed test binary that is to serve as the
// broker of KafkaProcess.
const childBrokerEnv = "TRIBUTARY_TEST_CHILD_BROKER"

// ServeChildBroker must be called first by the TestMain of a package using
// KafkaProcess: in the child it starts the broker, prints its address and
// serves until its standard input closes (the parent exited or cleaned
// up), then reports true; in the parent it does nothing and reports false.
//
//	func TestMain(m *testing.M) {
//		if testutil.ServeChildBroker() {
//			return
//		}
//		os.Exit(m.Run())
//	}
func ServeChildBroker() bool {
	if os.Getenv(childBrokerEnv) == "" {
		return false
	}
	var parts int
	if _, err := fmt.Sscan(os.Getenv(childBrokerEnv), &parts); err != nil || parts < 1 {
		fmt.Fprintf(os.Stderr, "%s=%q: want a partition count\n", childBrokerEnv, os.Getenv(childBrokerEnv))
		os.Exit(2)
	}
	b, err := kafkabroker.Start(kafkabroker.Config{Partitions: parts}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(b.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	b.Close()
	return true
}

// KafkaProcess starts the embedded broker in a child process (this test
// binary, re-executed; see ServeChildBroker) and returns its address. A
// benchmark uses it to measure its own process's CPU time without the
// broker's, as with a real Kafka cluster. When KafkaEnv names a real
// cluster it returns that, as Kafka does.
func KafkaProcess(t testing.TB, partitions int) string {
	t.Helper()
	if brokers := RealKafka(); len(brokers) > 0 {
		return realKafka(t, brokers)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childBrokerEnv, partitions))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the broker process: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("broker process: no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// ProcessCPU is the CPU time (user + system) this process has used so far;
// benchmarks divide work by it to report a rate per core.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProduceErrorResponse answers an embedded broker's produce request (in a
// kfake ControlKey hook) with error code for every partition it names,
// the way a broker refusing the records does.
func ProduceErrorResponse(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// VerifyNoLeaks runs a package's tests (call it from TestMain) and fails
// the package when they leave goroutines behind, apart from the libraries'
// own (LeakOptions).
func VerifyNoLeaks(m *testing.M) { goleak.VerifyTestMain(m, LeakOptions()...) }

// LeakOptions are what goleak ignores in every package: kafka-go's idle
// broker connections (its package-level default transport keeps them open
// after a Writer or Reader closes), and a closed gocql session's connection pool fill still
// sleeping between attempts to connect (gocql's Close does not wait for
// it; it ends by itself, while a session left open is still caught by its
// connections' reader and heartbeat goroutines).
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*conn).run"),
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connectMany"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connect"),
	}
}
