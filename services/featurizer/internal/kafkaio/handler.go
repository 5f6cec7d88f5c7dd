package kafkaio

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
)

// Writer writes records and returns once Kafka acknowledged them.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

var _ Writer = (*kafka.Producer)(nil)

// PartitionKey names a partition.
type PartitionKey struct {
	Topic     string
	Partition int
}

// lagTracker remembers, per partition, the records between the last one
// handled and the partition's high watermark.
type lagTracker struct {
	mu  sync.Mutex
	lag map[PartitionKey]int64
}

func (l *lagTracker) observe(m *kafka.Message) {
	if m.HighWaterMark <= 0 {
		return
	}
	lag := max(0, m.HighWaterMark-m.Offset-1)
	l.mu.Lock()
	if l.lag == nil {
		l.lag = map[PartitionKey]int64{}
	}
	l.lag[PartitionKey{m.Topic, m.Partition}] = lag
	l.mu.Unlock()
}

func (l *lagTracker) forget(topic string, partition int) {
	l.mu.Lock()
	delete(l.lag, PartitionKey{topic, partition})
	l.mu.Unlock()
}

// Lag returns the lag per partition seen so far.
func (l *lagTracker) Lag() map[PartitionKey]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[PartitionKey]int64, len(l.lag))
	for k, v := range l.lag {
		out[k] = v
	}
	return out
}

// RouteHandler is the source stage's consumer handler: it routes source
// records to routed records and, on Flush, writes them to the repartition
// topic before the consumer commits the source offsets.
type RouteHandler struct {
	r   *core.Router
	out Writer
	log *slog.Logger
	c   *core.Counters
	buf []kafka.Message
	lagTracker
}

// NewRouteHandler builds a handler routing with r (counting into c) and
// writing routed records with out (a producer on core.RepartitionTopic
// using Balancer).
func NewRouteHandler(r *core.Router, c *core.Counters, out Writer, log *slog.Logger) *RouteHandler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RouteHandler{r: r, c: c, out: out, log: log}
}

// Balancer places routed records on the repartition partition of their
// key (core.PartitionOfKey), the placement a starting aggregator restores by.
var Balancer = kafkago.BalancerFunc(func(m kafkago.Message, partitions ...int) int {
	return partitions[core.PartitionOfKey(m.Key, len(partitions))]
})

// Handle routes one record. Undecodable records are counted and skipped
// (logged for the first few and then rarely), never retried: a poison
// record must not stop the featurizer.
func (h *RouteHandler) Handle(_ context.Context, m kafka.Message) error {
	err := h.r.Route(core.Record{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		TimeMs:    m.Time.UnixMilli(),
		Value:     m.Value,
	}, func(key, value []byte) error {
		h.buf = append(h.buf, kafka.Message{Key: append([]byte(nil), key...), Value: append([]byte(nil), value...), Time: m.Time})
		return nil
	})
	if err != nil {
		if n := h.c.Invalid.Load(); n <= 10 || n%10000 == 0 {
			h.log.Warn("skip invalid record", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "invalid_total", n, "err", err)
		}
	}
	h.observe(&m)
	return nil
}

// Flush writes the routed records of the records handled since the last
// flush. On failure they are kept and written first next time.
func (h *RouteHandler) Flush(ctx context.Context) error {
	if len(h.buf) == 0 {
		return nil
	}
	if err := h.out.Write(ctx, h.buf...); err != nil {
		return fmt.Errorf("write %d routed records: %w", len(h.buf), err)
	}
	clear(h.buf)
	h.buf = h.buf[:0]
	return nil
}

// Emit writes core outputs as features.tiles records.
func Emit(ctx context.Context, w Writer, outs []core.Output) error {
	if len(outs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafka.Message{Key: []byte(o.Key), Value: o.Value}
	}
	if err := w.Write(ctx, msgs...); err != nil {
		return fmt.Errorf("emit %d tiles: %w", len(outs), err)
	}
	return nil
}
