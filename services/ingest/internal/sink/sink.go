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

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

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
	// Tracer, when set, makes one PRODUCER span per transaction: it starts
	// at the transaction's commit time and ends when Kafka acknowledged
	// the transaction's last record, so its duration is the commit →
	// Kafka delay; the transaction's records carry its context.
	Tracer trace.Tracer

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
		// txn is the traced transaction whose commit batch has not come
		// yet; ending the traced transactions the current write completes.
		txn    *txnSpan
		ending []*txnSpan
	)
	defer func() {
		for _, t := range ending {
			t.end(ctx.Err())
		}
		if txn != nil {
			txn.end(ctx.Err())
		}
	}()
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
			var headers []kafka.Header
			if w.Tracer != nil && b.TxnLSN != 0 && (len(b.Records) > 0 || txn != nil) {
				if txn == nil {
					txn = startTxnSpan(ctx, w.Tracer, b)
				}
				headers = txn.headers
				txn.add(b.Records)
				if b.CommitEnd != 0 {
					ending = append(ending, txn)
					txn = nil
				}
			}
			for _, r := range b.Records {
				msgs = append(msgs, kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Time: sent, Headers: headers})
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
		for _, t := range ending {
			t.end(nil)
		}
		clear(ending)
		ending = ending[:0]
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

// txnSpan is the span of one captured transaction.
type txnSpan struct {
	span    trace.Span
	headers []kafka.Header
	records int
	topic   string
	topics  int
}

func startTxnSpan(ctx context.Context, tr trace.Tracer, b *core.Batch) *txnSpan {
	attrs := append(kafka.MessagingAttrs("send", ""),
		semconv.DBSystemNamePostgreSQL,
		attribute.String("tributary.cdc.commit_lsn", fmt.Sprintf("%X/%X", b.TxnLSN>>32, uint32(b.TxnLSN))),
		attribute.String("tributary.cdc.commit_time", b.CommitTime.UTC().Format(time.RFC3339Nano)))
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...)}
	if !b.CommitTime.IsZero() {
		opts = append(opts, trace.WithTimestamp(b.CommitTime))
	}
	sctx, span := tr.Start(ctx, "send", opts...)
	t := &txnSpan{span: span}
	if span.SpanContext().IsValid() {
		tp := kafka.Traceparent(trace.SpanContextFromContext(sctx))
		t.headers = []kafka.Header{{Key: "traceparent", Value: tp}}
	}
	return t
}

// add counts records of the transaction and the topics they go to.
func (t *txnSpan) add(recs []core.Record) {
	for i := range recs {
		if recs[i].Topic != t.topic {
			if t.topic == "" {
				t.topic, t.topics = recs[i].Topic, 1
			} else {
				t.topics = 2
			}
		}
	}
	t.records += len(recs)
}

// end names the span after its destination (one topic) and ends it.
func (t *txnSpan) end(err error) {
	if t.topics == 1 {
		t.span.SetName("send " + t.topic)
		t.span.SetAttributes(semconv.MessagingDestinationName(t.topic))
	}
	t.span.SetAttributes(semconv.MessagingBatchMessageCount(t.records))
	kafka.EndSpan(t.span, err)
}
