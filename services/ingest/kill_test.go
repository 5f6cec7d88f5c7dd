package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/testutil"
)

// child is ingest running as a separate process (this test binary in
// command mode, see TestMain).
type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
	err    error
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), subprocessEnv+"=1")
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ingest process: %v", err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() && c.stderr.Len() > 0 {
			t.Logf("ingest process %d stderr:\n%s", cmd.Process.Pid, c.stderr.String())
		}
	})
	return c
}

// kill sends SIGKILL and waits until the process is gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		t.Fatalf("ingest process exited before it was killed: %v\n%s", c.err, c.stderr.String())
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("ingest process still running 10s after SIGKILL")
	}
	var ee *exec.ExitError
	if !errors.As(c.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("ingest process ended with %v, want killed by SIGKILL", c.err)
	}
}

// TestSIGKILLLosesNothing runs ingest as a separate process and kills it
// with SIGKILL at random moments while a writer commits tens of thousands of
// rows, restarting it each time: afterwards every committed row is on the
// topic at least once, and exactly once after cdc.Deduper dropped the
// re-deliveries.
func TestSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ingest processes for ~20s")
	}
	e := newEnv(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points from seed %d", seed)
	// The broker is in this process, so a produce request that left the
	// killed process is still appended: only what ingest had not sent yet can
	// be lost. One produce in two is held back 10-50 ms, so the WAL reader
	// runs ahead of Kafka (up to its hand-off queue) and kills also land while
	// read and confirmed-able changes wait for Kafka.
	e.broker = slowBroker(t, rand.New(rand.NewPCG(seed, 2)))
	tbl := e.table("sigkill")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	topic := cdc.Topic("public", tbl)
	args := []string{
		"--postgres-dsn", e.dsn, "--kafka-brokers", e.broker, "--admin-addr", "127.0.0.1:0",
		"--tables", "public." + tbl, "--slot", e.name, "--publication", e.name,
		"--state-topic", "state." + e.name, "--mask", "", "--status-interval", "10ms",
		"--log-level", "warn",
	}
	rng := rand.New(rand.NewPCG(seed, 0))

	c := startChild(t, args...)
	// The slot exists (the first start snapshots the empty table) before the
	// writer starts, so every row it commits is in the slot's stream.
	testutil.Eventually(t, 30*time.Second, "the replication slot", func() error {
		var active bool
		err := e.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.name).Scan(&active)
		if err != nil {
			return err
		}
		if !active {
			return errors.New("slot not streaming yet")
		}
		return nil
	})
	const minRows = 30000
	// Mostly small transactions, some of a few thousand rows: those take
	// several Kafka writes (ingest cuts batches at 1000 records), so kills
	// also land inside a transaction that is partly acknowledged, and the
	// WAL reader runs ahead of Kafka by up to its hand-off queue.
	sizes := rand.New(rand.NewPCG(seed, 1))
	w := startWriterSizes(t, e.dsn, tbl, 0, 1_000_000, func() int {
		if sizes.IntN(10) == 0 {
			return 1000 + sizes.IntN(4000)
		}
		return 1 + sizes.IntN(100)
	})
	var end int64
	const kills = 6
	for i := 0; i < kills; i++ {
		// A random point in the next few thousand records: the process may be
		// decoding, waiting for Kafka's acknowledgement or reporting to
		// PostgreSQL when it dies.
		target := end + 500 + rng.Int64N(5000)
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d records before kill %d", target, i+1), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, err := topicEnd(ctx, e.broker, topic)
			if err != nil {
				return err
			}
			if n < target {
				return fmt.Errorf("%d records", n)
			}
			end = n
			return nil
		})
		c.kill(t)
		t.Logf("kill %d: SIGKILL at %d records, writer at %d rows", i+1, end, w.committed.Load())
		c = startChild(t, args...)
	}
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("writer past %d rows", minRows), func() error {
		if n := w.committed.Load(); n < minRows {
			return fmt.Errorf("%d rows committed", n)
		}
		return nil
	})
	n := w.finish(t)
	if rest := int(w.committed.Load()); rest < minRows {
		t.Fatalf("writer committed %d rows, want at least %d", rest, minRows)
	}
	// The writer may be far ahead of a slowed-down ingest (a -race build):
	// allow for draining its backlog at a modest 2k rows/s.
	drain := 60*time.Second + time.Duration(n/2000)*time.Second
	evs := e.waitEvents(topic, drain, fmt.Sprintf("all %d rows", n), allIDs(n))
	select {
	case <-c.exited:
		t.Fatalf("ingest process exited on its own: %v\n%s", c.err, c.stderr.String())
	default:
	}
	d := cdc.NewDeduper()
	fresh := map[int]int{}
	dups := 0
	for _, ev := range evs {
		if ev.Env == nil {
			continue
		}
		if ev.Env.Op != cdc.OpCreate {
			t.Fatalf("record at offset %d has op %q, want only c (the table was empty when the slot was made)", ev.Offset, ev.Env.Op)
		}
		pos, err := cdc.ParseSequence(ev.Env.Source.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Fresh(topic, 0, ev.Env.Op, pos) {
			dups++
			continue
		}
		var id int
		fmt.Sscan(num(ev.Env.After["id"]), &id)
		fresh[id]++
	}
	for id := 1; id <= n; id++ {
		if fresh[id] != 1 {
			t.Errorf("id %d seen %d times after de-duplication", id, fresh[id])
		}
	}
	if extra := len(fresh) - n; extra > 0 {
		t.Errorf("%d ids on the topic that the writer did not commit", extra)
	}
	t.Logf("%d rows committed across %d SIGKILLs: %d records, %d re-delivered and dropped by the deduper", n, kills, len(evs), dups)
}

// slowBroker starts an embedded broker (the kfake broker testutil.Kafka
// starts, on a real TCP port) that holds back one produce request in two
// for 10-50 ms before handling it normally.
func slowBroker(t *testing.T, rng *rand.Rand) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var mu sync.Mutex
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		var d time.Duration
		if rng.IntN(2) == 0 {
			d = time.Duration(10+rng.IntN(41)) * time.Millisecond
		}
		mu.Unlock()
		if d > 0 {
			c.SleepControl(func() { <-time.After(d) })
		}
		return nil, nil, false
	})
	return c.ListenAddrs()[0]
}
