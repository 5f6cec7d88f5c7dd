package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
	"github.com/tributary-ml/tributary/services/ingest/internal/sink"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func producer(t *testing.T, broker string) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, BatchSize: 10000, BatchTimeout: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// counts collects the writer's row counts.
type counts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *counts) add(_ context.Context, table, op string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[table+"/"+op] += n
}

// run starts w on in and returns a function that stops it and returns Run's error.
func run(w *sink.Writer, in chan *core.Batch) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, in) }()
	return func() error {
		cancel()
		return <-done
	}
}

func readAll(t *testing.T, broker, topic string, want int) []kafkago.Message {
	t.Helper()
	var got []kafkago.Message
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%d records on %s", want, topic), func() error {
		conn, err := kafkago.DialLeader(context.Background(), "tcp", broker, topic, 0)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		batch := conn.ReadBatch(1, 10<<20)
		got = got[:0]
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			got = append(got, m)
		}
		_ = batch.Close()
		if len(got) < want {
			return fmt.Errorf("%d records", len(got))
		}
		return nil
	})
	return got
}

func rec(topic, table, op, key, value string) core.Record {
	r := core.Record{Topic: topic, Table: table, Op: op, Key: []byte(key)}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// TestWriterWritesInOrderAndAdvances: records reach their topics in stream
// order (tombstones as null values, with a timestamp), the acknowledged
// position is the highest transaction end written, the commit → ack lag is
// measured, rows are counted by table and op (tombstones not counted), and
// Done channels are closed once everything before them is acknowledged.
func TestWriterWritesInOrderAndAdvances(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	progress := core.NewProgress(100)
	c := &counts{n: map[string]int64{}}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := &sink.Writer{Producer: producer(t, broker), Progress: progress, Log: quiet, Count: c.add,
		Now: func() time.Time { return clock }}
	in := make(chan *core.Batch, 8)
	stop := run(w, in)
	defer stop()

	commit := clock.Add(-250 * time.Millisecond)
	in <- &core.Batch{Records: []core.Record{
		rec("cdc.public.a", "public.a", "c", `{"id":1}`, `{"op":"c","n":1}`),
		rec("cdc.public.b", "public.b", "c", `{"id":1}`, `{"op":"c","n":2}`),
	}}
	in <- &core.Batch{Records: []core.Record{
		rec("cdc.public.a", "public.a", "d", `{"id":1}`, `{"op":"d","n":3}`),
		rec("cdc.public.a", "public.a", "", `{"id":1}`, ""),
		rec("cdc.public.a", "public.a", "c", `{"id":2}`, `{"op":"c","n":4}`),
	}, CommitEnd: 500, CommitTime: commit}
	done := make(chan struct{})
	in <- &core.Batch{Done: done}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Done not closed 20s after the batches were handed over")
	}
	if got := progress.Acked(); got != 500 {
		t.Errorf("acked = %d, want 500 (the transaction end)", got)
	}
	if got := progress.Lag(); got != 250*time.Millisecond {
		t.Errorf("lag = %s, want 250ms (commit → ack on the writer's clock)", got)
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err() = %v after successful writes", err)
	}
	msgs := readAll(t, broker, "cdc.public.a", 4)
	want := []struct{ key, value string }{{`{"id":1}`, `{"op":"c","n":1}`}, {`{"id":1}`, `{"op":"d","n":3}`}, {`{"id":1}`, ""}, {`{"id":2}`, `{"op":"c","n":4}`}}
	if len(msgs) != len(want) {
		t.Fatalf("cdc.public.a has %d records, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if string(m.Key) != want[i].key || string(m.Value) != want[i].value {
			t.Errorf("record %d = %s → %q, want %s → %q", i, m.Key, m.Value, want[i].key, want[i].value)
		}
		if want[i].value == "" && m.Value != nil {
			t.Errorf("record %d: tombstone value %q, want null", i, m.Value)
		}
		if !m.Time.Equal(clock) {
			t.Errorf("record %d: timestamp %s, want the writer's clock %s", i, m.Time, clock)
		}
	}
	if b := readAll(t, broker, "cdc.public.b", 1); string(b[0].Value) != `{"op":"c","n":2}` {
		t.Errorf("cdc.public.b: %q", b[0].Value)
	}
	// Counts are reported right after the acknowledgement.
	want2 := map[string]int64{"public.a/c": 2, "public.a/d": 1, "public.b/c": 1}
	testutil.Eventually(t, 5*time.Second, "row counts", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for k, n := range want2 {
			if c.n[k] != n {
				return fmt.Errorf("counts %v, want %v (tombstones not counted)", c.n, want2)
			}
		}
		if len(c.n) != len(want2) {
			return fmt.Errorf("counts %v, want %v (tombstones not counted)", c.n, want2)
		}
		return nil
	})
}

// TestWriterRetriesWhileKafkaIsDown: while no broker answers, the writer
// keeps retrying the same batch, reports the error, and acknowledges nothing;
// once the broker is back the batch is written and the position advances.
func TestWriterRetriesWhileKafkaIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	progress := core.NewProgress(100)
	w := &sink.Writer{Producer: producer(t, addr), Progress: progress, Log: quiet,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	in := make(chan *core.Batch, 8)
	stop := run(w, in)
	defer stop()
	done := make(chan struct{})
	in <- &core.Batch{Records: []core.Record{rec("cdc.public.down", "public.down", "c", `{"id":1}`, `{"n":1}`)}, CommitEnd: 200, CommitTime: time.Now()}
	in <- &core.Batch{Done: done}
	testutil.Eventually(t, 30*time.Second, "the writer to report the failed write", func() error {
		if w.Err() == nil {
			return errors.New("Err() is nil")
		}
		return nil
	})
	select {
	case <-done:
		t.Fatal("Done closed while no broker was running")
	default:
	}
	if got := progress.Acked(); got != 100 {
		t.Fatalf("acked = %d while Kafka was down, want 100 (unchanged)", got)
	}

	b, err := kafkabroker.Start(kafkabroker.Config{Port: port, Partitions: 1}, nil)
	if err != nil {
		t.Fatalf("start broker on %d: %v", port, err)
	}
	defer b.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("batch not written 30s after the broker started; last error: %v", w.Err())
	}
	if got := progress.Acked(); got != 200 {
		t.Errorf("acked = %d after recovery, want 200", got)
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err() = %v after recovery", err)
	}
	if m := readAll(t, addr, "cdc.public.down", 1); string(m[0].Value) != `{"n":1}` {
		t.Errorf("record = %q", m[0].Value)
	}
}

// TestWriterStopsWithoutAcknowledging: a writer stopped while its write
// cannot succeed returns the context's error and leaves the position alone.
func TestWriterStopsWithoutAcknowledging(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	progress := core.NewProgress(7)
	w := &sink.Writer{Producer: producer(t, addr), Progress: progress, Log: quiet,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	in := make(chan *core.Batch, 1)
	stop := run(w, in)
	in <- &core.Batch{Records: []core.Record{rec("cdc.public.x", "public.x", "c", `{"id":1}`, `{}`)}, CommitEnd: 9}
	testutil.Eventually(t, 30*time.Second, "a failed write", func() error {
		if w.Err() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if got := progress.Acked(); got != 7 {
		t.Errorf("acked = %d, want 7 (unchanged)", got)
	}
}
