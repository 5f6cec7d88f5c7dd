package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
)

// Handler processes records. Handle is called for each record in partition
// order; Flush is called before offsets are committed, so whatever Handle
// buffered must be durable (written downstream) when Flush returns.
type Handler interface {
	Handle(ctx context.Context, m Message) error
	Flush(ctx context.Context) error
}

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Brokers []string
	GroupID string
	// Topics must exist before NewConsumer (kafka.EnsureTopics; every
	// service does so): on Apache Kafka, kafka-go's group reader that joins
	// while a topic does not exist yet is assigned none of it and stops
	// watching it, so it never reads it. (The embedded broker creates a
	// topic when the group asks about it, which hid this.)
	Topics []string
	// CommitInterval is how often buffered work is flushed and offsets committed.
	CommitInterval time.Duration
	// CommitEvery flushes and commits after this many records even within the interval.
	CommitEvery int
	// IdleFlush flushes and commits as soon as no record arrived for this
	// long, so a quiet stream is not held back by CommitInterval; under load
	// records keep arriving and batches stay large.
	IdleFlush time.Duration
	// MaxWait bounds how long a fetch waits for new data.
	MaxWait time.Duration
	// IgnoreTrace hands the handler the run's context instead of one
	// carrying each record's trace (saves decoding the traceparent header
	// of every record, for handlers that do not use it).
	IgnoreTrace bool
	// Tracer, when set, makes a CONSUMER span "process <topic>" for each
	// record whose trace is sampled (checked without decoding the
	// header), handed to the handler in its context; the span ends when
	// the flush that made the record's effect durable returned. Unsampled
	// records cost no span.
	Tracer trace.Tracer
	Log    *slog.Logger
}

// maxOpenSpans bounds the process spans kept open until a flush; the
// spans of records beyond it end when their Handle returns.
const maxOpenSpans = 1024

// Consumer reads a consumer group's share of topics from the earliest
// uncommitted offset and commits only after the handler flushed.
type Consumer struct {
	cfg ConsumerConfig
	r   *kafkago.Reader
}

// NewConsumer builds a consumer; Run starts it.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("consumer: no brokers")
	case cfg.GroupID == "":
		return nil, errors.New("consumer: no group id")
	case len(cfg.Topics) == 0:
		return nil, errors.New("consumer: no topics")
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if cfg.CommitEvery == 0 {
		cfg.CommitEvery = 10000
	}
	if cfg.IdleFlush == 0 {
		cfg.IdleFlush = 5 * time.Millisecond
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 100 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:                cfg.Brokers,
		GroupID:                cfg.GroupID,
		GroupTopics:            cfg.Topics,
		StartOffset:            kafkago.FirstOffset,
		MinBytes:               1,
		MaxBytes:               16 << 20,
		MaxWait:                cfg.MaxWait,
		ReadBackoffMin:         10 * time.Millisecond,
		ReadBackoffMax:         200 * time.Millisecond,
		HeartbeatInterval:      time.Second,
		SessionTimeout:         10 * time.Second,
		RebalanceTimeout:       10 * time.Second,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: time.Second,
	})
	return &Consumer{cfg: cfg, r: r}, nil
}

// Lag is the reader's lag on its current partition (kafka-go reports one figure).
func (c *Consumer) Lag() int64 { return c.r.Stats().Lag }

// Run consumes until ctx ends. Records are handed to h; when no record
// arrived for IdleFlush, every CommitInterval, or every CommitEvery records,
// h is flushed and then the offsets of the handled records are committed.
// On exit the last handled records are flushed and committed too. A
// handler error stops the consumer without committing the failed record,
// so it is delivered again after a restart.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	var (
		// last is the newest handled record of each partition (what a
		// commit needs), n how many were handled since the last commit.
		last       []Message
		n          int
		lastCommit = time.Now()
		lastRecord time.Time
		// open are the process spans of sampled records handled since
		// the last flush.
		open []trace.Span
	)
	endOpen := func(err error) {
		for _, s := range open {
			EndSpan(s, err)
		}
		clear(open)
		open = open[:0]
	}
	defer func() { endOpen(errors.New("consumer stopped before the record was flushed")) }()
	commit := func(cctx context.Context) error {
		if n == 0 {
			return nil
		}
		if err := h.Flush(cctx); err != nil {
			endOpen(err)
			return fmt.Errorf("flush before commit: %w", err)
		}
		endOpen(nil)
		if err := c.r.CommitMessages(cctx, last...); err != nil {
			return fmt.Errorf("commit offsets: %w", err)
		}
		clear(last)
		last, n = last[:0], 0
		lastCommit = time.Now()
		return nil
	}
	defer func() {
		if err := c.r.Close(); err != nil {
			c.cfg.Log.Warn("close kafka reader", "err", err)
		}
	}()
	// A fetch waits under fctx, whose deadline is the next moment a commit
	// may be due. It is made anew only when it expires, not per record: on
	// expiry, a record that arrived in the meantime moves the idle moment
	// on, and a new deadline is set from there.
	var (
		fctx   context.Context
		cancel context.CancelFunc = func() {}
	)
	defer func() { cancel() }()
	arm := func(now time.Time) {
		cancel()
		due := lastCommit.Add(c.cfg.CommitInterval)
		if n > 0 {
			due = minTime(due, lastRecord.Add(c.cfg.IdleFlush))
		} else {
			due = now.Add(c.cfg.CommitInterval)
		}
		fctx, cancel = context.WithDeadline(ctx, due)
	}
	arm(time.Now())
	for {
		m, err := c.r.FetchMessage(fctx)
		switch {
		case err == nil:
			hctx := ctx
			var span trace.Span
			switch {
			case c.cfg.Tracer != nil && Sampled(&m):
				hctx, span = StartProcess(ctx, c.cfg.Tracer, &m, c.cfg.GroupID)
			case !c.cfg.IgnoreTrace:
				// A copy: the propagator keeps a pointer to the headers,
				// which would move every record to the heap.
				tm := m
				hctx = ExtractTrace(ctx, &tm)
			}
			herr := h.Handle(hctx, m)
			if span != nil {
				if herr != nil || len(open) >= maxOpenSpans {
					EndSpan(span, herr)
				} else {
					open = append(open, span)
				}
			}
			if herr != nil {
				return fmt.Errorf("handle %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, herr)
			}
			c.track(&last, m)
			n++
			lastRecord = time.Now()
			if n >= c.cfg.CommitEvery || lastRecord.Sub(lastCommit) >= c.cfg.CommitInterval {
				if err := commit(ctx); err != nil {
					if ctx.Err() != nil {
						continue
					}
					return err
				}
				arm(lastRecord)
			} else if n == 1 {
				// The first record since a commit: the wait armed while
				// nothing was pending ends at the interval, but an idle
				// stream must be committed IdleFlush after this record.
				arm(lastRecord)
			}
		case ctx.Err() != nil:
			// Shutting down: flush and commit what was handled.
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := commit(sctx)
			scancel()
			return err
		case errors.Is(err, context.DeadlineExceeded):
			now := time.Now()
			if n > 0 && now.Sub(lastRecord) < c.cfg.IdleFlush && now.Sub(lastCommit) < c.cfg.CommitInterval {
				arm(now) // records kept coming: not idle yet
				continue
			}
			// Idle, or the interval is over: commit what was handled.
			if err := commit(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			arm(time.Now())
		default:
			c.cfg.Log.Warn("kafka fetch", "err", err)
			waitBackoff(ctx, 200*time.Millisecond)
			arm(time.Now())
		}
	}
}

// track remembers m as the newest handled record of its partition.
func (c *Consumer) track(last *[]Message, m Message) {
	for i := range *last {
		if l := &(*last)[i]; l.Partition == m.Partition && l.Topic == m.Topic {
			// Only what a commit reads: the record's data can be freed.
			l.Offset = m.Offset
			return
		}
	}
	*last = append(*last, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
