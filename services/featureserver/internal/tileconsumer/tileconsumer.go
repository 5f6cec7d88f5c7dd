// Package tileconsumer is the featureserver's inbound Kafka port: it reads
// tiles from features.tiles and writes them to the online store before the
// consumer commits their offsets.
package tileconsumer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// Handler buffers decoded tiles and writes them in Flush. Within a batch
// only the newest state of each tile key is written.
type Handler struct {
	store   core.TileStore
	catalog *core.Catalog
	now     func() time.Time
	log     *slog.Logger

	pending map[string]int // tile key → index in batch
	batch   []core.TileWrite
	// traced are the spans of sampled tile records in the batch (the
	// consumer's process spans, open until Flush returned).
	traced []tracedTile

	freshness metric.Float64Histogram
	written   metric.Int64Counter
	invalid   metric.Int64Counter
}

var _ kafka.Handler = (*Handler)(nil)

// New builds a handler writing to store. meter may be nil in tests that do
// not look at metrics.
func New(store core.TileStore, catalog *core.Catalog, now func() time.Time, meter metric.Meter, log *slog.Logger) (*Handler, error) {
	h := &Handler{store: store, catalog: catalog, now: now, log: log, pending: map[string]int{}}
	var err error
	if h.freshness, err = meter.Float64Histogram("tributary_featureserver_freshness_seconds",
		metric.WithDescription("time from a tile's newest event to the tile being servable"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)); err != nil {
		return nil, err
	}
	if h.written, err = meter.Int64Counter("tributary_featureserver_tiles_written",
		metric.WithDescription("tiles written to the online store")); err != nil {
		return nil, err
	}
	if h.invalid, err = meter.Int64Counter("tributary_featureserver_tiles_invalid",
		metric.WithDescription("records on features.tiles that are not valid tiles, skipped")); err != nil {
		return nil, err
	}
	return h, nil
}

// tracedTile is a sampled tile record waiting to become servable.
type tracedTile struct {
	span trace.Span
	tile *tiles.Tile
}

// maxTraced bounds the traced tiles of one batch.
const maxTraced = 1024

// Handle implements kafka.Handler.
func (h *Handler) Handle(ctx context.Context, m kafka.Message) error {
	if m.Value == nil {
		// A tombstone: tiles expire on their own, nothing to delete.
		return nil
	}
	t, err := tiles.Decode(m.Value)
	if err != nil {
		// A record that can never decode would stop the stream forever if
		// it failed the batch; it is counted and logged instead.
		h.invalid.Add(ctx, 1)
		h.log.Warn("skipping invalid tile", "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() && len(h.traced) < maxTraced {
		h.traced = append(h.traced, tracedTile{span: span, tile: t})
	}
	w := core.TileWrite{Tile: t, ExpiresMs: core.ExpiryOf(h.catalog.Views().Spec(t.View), t)}
	if i, ok := h.pending[t.Key()]; ok {
		h.batch[i] = w
		return nil
	}
	h.pending[t.Key()] = len(h.batch)
	h.batch = append(h.batch, w)
	return nil
}

// Flush implements kafka.Handler: the batch is durable when it returns.
func (h *Handler) Flush(ctx context.Context) error {
	if len(h.batch) == 0 {
		return nil
	}
	if err := h.store.PutTiles(ctx, h.batch); err != nil {
		return fmt.Errorf("write %d tiles: %w", len(h.batch), err)
	}
	now := h.now()
	// The tiles are servable now: the spans of traced ones say so (the
	// consumer ends them when Flush returns).
	for _, tt := range h.traced {
		attrs := []attribute.KeyValue{attribute.String("tributary.tile.key", tt.tile.Key())}
		if tt.tile.MaxEventMs > 0 {
			attrs = append(attrs, attribute.Float64("tributary.freshness_seconds", now.Sub(time.UnixMilli(tt.tile.MaxEventMs)).Seconds()))
		}
		tt.span.AddEvent("tile servable", trace.WithAttributes(attrs...))
	}
	clear(h.traced)
	h.traced = h.traced[:0]
	for _, w := range h.batch {
		if w.Tile.MaxEventMs > 0 {
			h.freshness.Record(ctx, now.Sub(time.UnixMilli(w.Tile.MaxEventMs)).Seconds())
		}
	}
	h.written.Add(ctx, int64(len(h.batch)))
	clear(h.pending)
	clear(h.batch)
	h.batch = h.batch[:0]
	return nil
}
