// Package predlogger writes prediction records to the `predictions` topic
// asynchronously through a bounded buffer. Serving never waits for Kafka:
// when the buffer is full (Kafka slow or down) a record is dropped and
// counted in tributary_modelserver_prediction_log_dropped_total; a batch
// Kafka refuses is dropped and counted too. Predictions matter more than
// their log; the counter makes every loss visible.
package predlogger

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
)

var _ core.PredictionLog = (*Logger)(nil)

// Writer is where batches go: a kafka.Producer on topic predictions.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Options configure a Logger; zero values get defaults.
type Options struct {
	// Buffer is how many records may wait for Kafka (default 10000).
	Buffer int
	// BatchSize bounds the records per write (default 500).
	BatchSize int
	// DrainTimeout bounds the flush of waiting records on shutdown (default 5s).
	DrainTimeout time.Duration
	Meter        metric.Meter
	Log          *slog.Logger
	// InFlight reports the prediction requests still being answered; on
	// shutdown the drain waits for them (within DrainTimeout) so their records
	// are written too.
	InFlight func() int
}

type item struct {
	rec *predlog.Prediction
	sc  trace.SpanContext
}

// Logger is the asynchronous prediction log.
type Logger struct {
	w       Writer
	opts    Options
	ch      chan item
	closed  atomic.Bool
	dropped metric.Int64Counter
	written metric.Int64Counter
}

// New builds a Logger writing to w.
func New(w Writer, opts Options) (*Logger, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	l := &Logger{w: w, opts: opts, ch: make(chan item, opts.Buffer)}
	var err error
	if l.dropped, err = opts.Meter.Int64Counter("tributary_modelserver_prediction_log_dropped",
		metric.WithDescription("prediction log records dropped: buffer_full (Kafka slow or down) or write_error (Kafka refused the batch)")); err != nil {
		return nil, err
	}
	if l.written, err = opts.Meter.Int64Counter("tributary_modelserver_prediction_log_written",
		metric.WithDescription("prediction log records acknowledged by Kafka")); err != nil {
		return nil, err
	}
	return l, nil
}

// Log queues a record without blocking; it drops the record when the buffer is full.
func (l *Logger) Log(ctx context.Context, p *predlog.Prediction) {
	if l.closed.Load() {
		l.dropped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "shutdown")))
		return
	}
	select {
	case l.ch <- item{rec: p, sc: trace.SpanContextFromContext(ctx)}:
	default:
		l.dropped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "buffer_full")))
	}
}

// Run writes queued records until ctx ends, then flushes what is queued
// within DrainTimeout.
func (l *Logger) Run(ctx context.Context) error {
	batch := make([]item, 0, l.opts.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return l.drain()
		case it := <-l.ch:
			batch = append(batch[:0], it)
		}
		batch = l.fill(batch)
		// A batch already taken is written even when ctx ends meanwhile.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.DrainTimeout)
		l.write(wctx, batch)
		cancel()
	}
}

// fill adds what is queued now, up to a batch.
func (l *Logger) fill(batch []item) []item {
	for len(batch) < l.opts.BatchSize {
		select {
		case it := <-l.ch:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

func (l *Logger) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.DrainTimeout)
	defer cancel()
	defer l.closed.Store(true)
	batch := make([]item, 0, l.opts.BatchSize)
	wait := time.NewTicker(5 * time.Millisecond)
	defer wait.Stop()
	for ctx.Err() == nil {
		batch = l.fill(batch[:0])
		if len(batch) > 0 {
			l.write(ctx, batch)
			continue
		}
		if l.opts.InFlight == nil || l.opts.InFlight() == 0 {
			return nil
		}
		// Requests still being answered will log: wait for them.
		select {
		case <-ctx.Done():
		case <-wait.C:
		}
	}
	if n := len(l.ch); n > 0 {
		l.dropped.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("reason", "shutdown")))
		l.opts.Log.Warn("prediction log records not flushed at shutdown", "dropped", n)
	}
	return nil
}

func (l *Logger) write(ctx context.Context, batch []item) {
	msgs := make([]kafka.Message, 0, len(batch))
	for _, it := range batch {
		b, err := json.Marshal(it.rec)
		if err != nil {
			l.dropped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "encode_error")))
			continue
		}
		m := kafka.Message{Key: []byte(it.rec.PredictionID), Value: b}
		if it.sc.IsValid() {
			kafka.InjectTrace(trace.ContextWithSpanContext(context.Background(), it.sc), &m)
		}
		msgs = append(msgs, m)
	}
	if err := l.w.Write(ctx, msgs...); err != nil {
		l.dropped.Add(ctx, int64(len(msgs)), metric.WithAttributes(attribute.String("reason", "write_error")))
		l.opts.Log.Warn("prediction log write failed, records dropped", "records", len(msgs), "err", err)
		return
	}
	l.written.Add(ctx, int64(len(msgs)))
}
