// Package sink is ingest's Kafka adapter: it writes batches in order, retries
// until Kafka acknowledges them, and records the acknowledged position.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// Producer is the part of a Kafka producer the writer uses.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Counter counts acknowledged rows by table and op.
type Counter func(ctx context.Context, table, op string, n int64)

// Writer drains batches, writes them to Kafka and advances Progress.
type Writer struct {
	Producer Producer
	Progress *core.Progress
	Log      *slog.Logger
	Count    Counter
	// MaxRecords bounds one Kafka write.
	MaxRecords int
	// Backoff bounds the wait between retries of a failed write.
	BackoffMin, BackoffMax time.Duration
	Now                    func() time.Time

	mu      sync.Mutex
	lastErr error
}

// Err is the error of the last write, nil once a write succeeded.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

type countKey struct{ table, op string }

// Run writes batches from in until ctx ends. A failed write is retried
// with backoff, in order, until it succeeds: while it fails the reader
// blocks on in, which stops WAL reading.
func (w *Writer) Run(ctx context.Context, in <-chan *core.Batch) error {
	if w.MaxRecords <= 0 {
		w.MaxRecords = 5000
	}
	if w.BackoffMin <= 0 {
		w.BackoffMin = 100 * time.Millisecond
	}
	if w.BackoffMax <= 0 {
		w.BackoffMax = 5 * time.Second
	}
	now := w.Now
	if now == nil {
		now = time.Now
	}
	var (
		msgs   []kafka.Message
		done   []chan struct{}
		counts = map[countKey]int64{}
	)
	for {
		var first *core.Batch
		select {
		case <-ctx.Done():
			return ctx.Err()
		case first = <-in:
		}
		msgs, done = msgs[:0], done[:0]
		var end uint64
		var commitTime time.Time
		// The record timestamp (CreateTime) is when ingest hands the record to
		// Kafka, as a Java producer sets it: time-based retention and
		// consumers' lag tools need a real time, not 0 (1970).
		sent := now()
		add := func(b *core.Batch) {
			for _, r := range b.Records {
				msgs = append(msgs, kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Time: sent})
				if r.Op != "" {
					counts[countKey{r.Table, r.Op}]++
				}
			}
			if b.CommitEnd > end {
				end, commitTime = b.CommitEnd, b.CommitTime
			}
			if b.Done != nil {
				done = append(done, b.Done)
			}
		}
		add(first)
	drain:
		for len(msgs) < w.MaxRecords {
			select {
			case b := <-in:
				add(b)
			default:
				break drain
			}
		}
		if err := w.write(ctx, msgs); err != nil {
			return err
		}
		w.Progress.Ack(end, commitTime, now())
		for _, d := range done {
			close(d)
		}
		for k, n := range counts {
			if w.Count != nil {
				w.Count(ctx, k.table, k.op, n)
			}
			delete(counts, k)
		}
	}
}

func (w *Writer) write(ctx context.Context, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	backoff := w.BackoffMin
	for attempt := 1; ; attempt++ {
		err := w.Producer.Write(ctx, msgs...)
		if err == nil {
			if attempt > 1 {
				w.Log.Info("kafka write recovered", "attempts", attempt)
			}
			w.setErr(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.setErr(fmt.Errorf("kafka write: %w", err))
		w.Log.Warn("kafka write failed; retrying", "records", len(msgs), "attempt", attempt, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, w.BackoffMax)
	}
}

// ErrStopped is returned by Wait when the writer stopped first.
var ErrStopped = errors.New("writer stopped")
