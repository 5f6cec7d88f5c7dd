package kafkaio

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
)

// Writer writes records to features.tiles and returns once Kafka
// acknowledged them.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

var _ Writer = (*kafka.Producer)(nil)

// Handler is the consumer's handler: it feeds records to the core and, on
// Flush, writes every changed tile (and tombstones of expired ones) before
// the consumer commits the offsets of the records that changed them.
type Handler struct {
	eng *core.Engine
	out Writer
	log *slog.Logger

	// engMu serialises the engine between the consumer and callers of
	// WithEngine (tests, restore).
	engMu sync.Mutex

	// unsent holds the outputs of a flush whose write failed: the engine
	// handed them over already, so they are written first next time
	// (otherwise a retried flush would commit offsets of lost tiles).
	unsent []core.Output

	lagMu sync.Mutex
	lag   map[PartitionKey]int64
}

// PartitionKey names a source partition.
type PartitionKey struct {
	Topic     string
	Partition int
}

// NewHandler builds a handler around eng writing tiles with out.
func NewHandler(eng *core.Engine, out Writer, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{eng: eng, out: out, log: log, lag: map[PartitionKey]int64{}}
}

// Handle applies one record. Undecodable records are counted and skipped
// (logged for the first few and then rarely), never retried: a poison
// record must not stop the featurizer.
func (h *Handler) Handle(_ context.Context, m kafka.Message) error {
	h.engMu.Lock()
	err := h.eng.Apply(core.Record{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		TimeMs:    m.Time.UnixMilli(),
		Value:     m.Value,
	})
	h.engMu.Unlock()
	if err != nil {
		if n := h.eng.C.Invalid.Load(); n <= 10 || n%10000 == 0 {
			h.log.Warn("skip invalid record", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "invalid_total", n, "err", err)
		}
	}
	if m.HighWaterMark > 0 {
		lag := m.HighWaterMark - m.Offset - 1
		if lag < 0 {
			lag = 0
		}
		h.lagMu.Lock()
		h.lag[PartitionKey{m.Topic, m.Partition}] = lag
		h.lagMu.Unlock()
	}
	return nil
}

// Flush writes the tiles changed since the last flush.
func (h *Handler) Flush(ctx context.Context) error {
	h.engMu.Lock()
	outs, err := h.eng.Flush()
	h.engMu.Unlock()
	if err != nil {
		return err
	}
	if len(h.unsent) > 0 {
		outs = append(h.unsent, outs...)
	}
	if err := Emit(ctx, h.out, outs); err != nil {
		h.unsent = outs
		return err
	}
	h.unsent = nil
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

// Lag returns the consumer lag per source partition seen so far: records
// between the last one handled and the partition's high watermark.
func (h *Handler) Lag() map[PartitionKey]int64 {
	h.lagMu.Lock()
	defer h.lagMu.Unlock()
	out := make(map[PartitionKey]int64, len(h.lag))
	for k, v := range h.lag {
		out[k] = v
	}
	return out
}

// WithEngine runs fn with exclusive use of the engine.
func (h *Handler) WithEngine(fn func(*core.Engine)) {
	h.engMu.Lock()
	defer h.engMu.Unlock()
	fn(h.eng)
}
