package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
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
	Topics  []string
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
	Log     *slog.Logger
}

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
// h is flushed and then the offsets of the handled records are committed. On exit the last handled records are flushed and
// committed too. A handler error stops the consumer without committing the
// failed record, so it is delivered again after a restart.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	var pending []Message
	lastCommit := time.Now()
	commit := func(cctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		if err := h.Flush(cctx); err != nil {
			return fmt.Errorf("flush before commit: %w", err)
		}
		if err := c.r.CommitMessages(cctx, pending...); err != nil {
			return fmt.Errorf("commit offsets: %w", err)
		}
		pending = pending[:0]
		lastCommit = time.Now()
		return nil
	}
	defer func() {
		if err := c.r.Close(); err != nil {
			c.cfg.Log.Warn("close kafka reader", "err", err)
		}
	}()
	for {
		wait := c.cfg.CommitInterval
		if len(pending) > 0 {
			wait = min(c.cfg.IdleFlush, max(0, c.cfg.CommitInterval-time.Since(lastCommit)))
		}
		fctx, cancel := context.WithTimeout(ctx, wait)
		m, err := c.r.FetchMessage(fctx)
		cancel()
		switch {
		case err == nil:
			if herr := h.Handle(ExtractTrace(ctx, &m), m); herr != nil {
				return fmt.Errorf("handle %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, herr)
			}
			pending = append(pending, m)
		case ctx.Err() != nil:
			// Shutting down: flush and commit what was handled.
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := commit(sctx)
			scancel()
			return err
		case errors.Is(err, context.DeadlineExceeded):
			// Idle: commit what was handled.
			if err := commit(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			continue
		default:
			c.cfg.Log.Warn("kafka fetch", "err", err)
			if !waitBackoff(ctx, 200*time.Millisecond) {
				continue
			}
		}
		if len(pending) >= c.cfg.CommitEvery || time.Since(lastCommit) >= c.cfg.CommitInterval {
			if err := commit(ctx); err != nil {
				if ctx.Err() != nil {
					continue
				}
				return err
			}
		}
	}
}
