// Package stream is the metrics service's Kafka side: the inbound handler
// that folds `predictions` and `labels` into the aggregator and, on every
// flush, publishes the changed rows to metrics.model_minute (and the
// embedded store) before the consumer commits; and the restore that reads
// the published rows back at start.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// GroupID is the metrics service's consumer group.
const GroupID = "tributary-metrics"

// Publisher writes rows to metrics.model_minute (its default topic) and
// returns once they are durable.
type Publisher interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Handler is the kafka.Handler of the metrics service. Handle and Flush are
// called from the consumer's goroutine; Stats may be called from any.
type Handler struct {
	mu      sync.Mutex
	agg     *core.Aggregator
	pub     Publisher
	writers []core.RowWriter
	onRows  func(context.Context, []core.Row)
	log     *slog.Logger
	dec     *decoder

	invalid   int64
	published int64

	// cdcTopic, when set, carries labels as change events of a labels table.
	cdcTopic string
	cdcCols  predlog.LabelColumns
	dedupe   *cdc.Deduper
	// rebuilding: records read by Rebuild are delivered again by the
	// consumer; a bad one is counted and logged then, not twice.
	rebuilding bool
}

var _ kafka.Handler = (*Handler)(nil)

// NewHandler folds records into agg and publishes flushed rows with pub,
// then hands them to every writer and to onRows (alerts); onRows may be nil.
func NewHandler(agg *core.Aggregator, pub Publisher, writers []core.RowWriter, onRows func(context.Context, []core.Row), log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{agg: agg, pub: pub, writers: writers, onRows: onRows, log: log, dec: newDecoder()}
}

// ConsumeCDCLabels makes the handler read labels from topic as Debezium
// change events of a labels table with the columns cols (besides the
// `labels` topic). Call it before the first record.
func (h *Handler) ConsumeCDCLabels(topic string, cols predlog.LabelColumns) {
	h.cdcTopic, h.cdcCols, h.dedupe = topic, cols, cdc.NewDeduper()
}

// LabelTopics are the topics the handler reads labels from.
func (h *Handler) LabelTopics() []string {
	if h.cdcTopic == "" {
		return []string{predlog.LabelsTopic}
	}
	return []string{predlog.LabelsTopic, h.cdcTopic}
}

// Handle folds one record. Records that do not decode are counted, logged
// and skipped: one bad producer must not stop model monitoring.
func (h *Handler) Handle(_ context.Context, m kafka.Message) error {
	src := core.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch m.Topic {
	case predlog.LabelsTopic:
		var l predlog.Label
		if err := json.Unmarshal(m.Value, &l); err != nil || l.PredictionID == "" {
			h.reject(m, "label", err)
			return nil
		}
		h.agg.AddLabel(l.PredictionID, l.Value, l.TimeMs, src)
	case h.cdcTopic:
		l, err := predlog.DecodeCDCLabel(m.Value, h.cdcCols)
		if errors.Is(err, predlog.ErrNotALabel) {
			return nil
		}
		if err != nil {
			h.reject(m, "cdc label", err)
			return nil
		}
		// An ingest restart re-sends changes after the slot's confirmed
		// position under new offsets: drop them by LSN.
		if l.Op != cdc.OpRead && l.Pos != (cdc.Position{}) && !h.dedupe.Fresh(m.Topic, m.Partition, l.Op, l.Pos) {
			return nil
		}
		h.agg.AddLabel(l.PredictionID, l.Value, l.TimeMs, src)
	default:
		p, feats, err := h.dec.decode(m.Value)
		if err != nil {
			h.reject(m, "prediction", err)
			return nil
		}
		k, cp := convert(p, feats)
		h.agg.AddPrediction(p.PredictionID, k, p.TimeMs, &cp, src)
	}
	return nil
}

func (h *Handler) reject(m kafka.Message, what string, err error) {
	if h.rebuilding {
		return
	}
	h.invalid++
	if err == nil {
		err = errors.New("prediction_id: empty")
	}
	h.log.Warn("skip undecodable record", "what", what, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
}

// DecodePrediction decodes and checks a record of `predictions`.
func DecodePrediction(b []byte, p *predlog.Prediction) error {
	if err := json.Unmarshal(b, p); err != nil {
		return fmt.Errorf("decode prediction: %w", err)
	}
	return checkPrediction(p)
}

func checkPrediction(p *predlog.Prediction) error {
	switch {
	case p.Model == "":
		return errors.New("prediction: model is empty")
	case strings.Contains(p.Model, "|"), strings.Contains(p.Version, "|"), strings.Contains(p.Variant, "|"):
		return errors.New("prediction: model, version or variant contains '|', the row key separator")
	}
	return nil
}

// Convert maps a logged prediction onto its row key and the aggregate's input.
func Convert(p *predlog.Prediction) (core.Key, core.Prediction) {
	return convert(p, core.FeaturesOf(p.Features))
}

func convert(p *predlog.Prediction, feats []core.Feature) (core.Key, core.Prediction) {
	k := core.Key{ModelKey: core.ModelKey{Model: p.Model, Version: p.Version, Variant: p.Variant}, Minute: core.MinuteOf(p.TimeMs)}
	return k, core.Prediction{
		Parent: p.ParentID, Failed: p.Error != "", LatencyMs: p.LatencyMs, Score: p.Score,
		Features: feats, Defaulted: p.Defaulted,
	}
}

// Flush publishes the rows changed since the last flush (full state: an
// idempotent upsert keyed model|version|variant|minute) and returns once
// Kafka acknowledged them; only then does the consumer commit offsets.
func (h *Handler) Flush(ctx context.Context) error {
	h.mu.Lock()
	rows := h.agg.Flush()
	h.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(rows))
	for i, r := range rows {
		b, err := r.Marshal()
		if err != nil {
			return fmt.Errorf("encode row %s: %w", r.PK(), err)
		}
		msgs[i] = kafka.Message{Key: []byte(r.PK()), Value: b}
	}
	if err := h.pub.Write(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d rows: %w", len(rows), err)
	}
	for _, w := range h.writers {
		if err := w.Upsert(ctx, rows); err != nil {
			return fmt.Errorf("store %d rows: %w", len(rows), err)
		}
	}
	if h.onRows != nil {
		h.onRows(ctx, rows)
	}
	h.mu.Lock()
	h.published += int64(len(rows))
	h.mu.Unlock()
	return nil
}

// Stats are the handler's counters.
type Stats struct {
	core.Stats
	Invalid, Published int64
}

// Stats returns the counters so far.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Stats: h.agg.Stats(), Invalid: h.invalid, Published: h.published}
}

// Restore reads every row on topic (from the start to the end it has now),
// keeps the last row of each key, and returns them.
func Restore(ctx context.Context, brokers []string, topic string, log *slog.Logger) ([]core.Row, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	latest := map[core.Key]core.Row{}
	err := scan(ctx, brokers, topic, time.Time{}, func(m kafkago.Message) {
		if len(m.Value) == 0 { // a tombstone deletes nothing we need
			return
		}
		row, err := core.UnmarshalRow(m.Value)
		if err != nil {
			log.Warn("restore: skip undecodable row", "partition", m.Partition, "offset", m.Offset, "err", err)
			return
		}
		latest[row.Key] = row
	})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	rows := make([]core.Row, 0, len(latest))
	for _, r := range latest {
		rows = append(rows, r)
	}
	return rows, nil
}

// Rebuild refills the label join after a start: it remembers the
// predictions written since `since` (without counting them: those past the
// committed offset are redelivered and counted then), then joins the
// labels written since then through the normal path, so a label whose
// prediction is before the committed offset still finds it, and a label
// already counted in a restored row is recognised by its offset.
func (h *Handler) Rebuild(ctx context.Context, brokers []string, since time.Time) (preds, labels int, err error) {
	err = scan(ctx, brokers, predlog.PredictionsTopic, since, func(m kafkago.Message) {
		var p predlog.Prediction
		if DecodePrediction(m.Value, &p) != nil {
			return
		}
		k, _ := convert(&p, nil)
		h.mu.Lock()
		h.agg.Remember(p.PredictionID, p.ParentID, k, p.TimeMs, p.Score, p.Error != "", core.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
		h.mu.Unlock()
		preds++
	})
	if err != nil {
		return preds, labels, fmt.Errorf("rebuild label join: %w", err)
	}
	h.mu.Lock()
	h.rebuilding = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.rebuilding = false
		h.mu.Unlock()
	}()
	for _, topic := range h.LabelTopics() {
		err = scan(ctx, brokers, topic, since, func(m kafkago.Message) {
			if err := h.Handle(ctx, m); err == nil {
				labels++
			}
		})
		if err != nil {
			return preds, labels, fmt.Errorf("rebuild label join: %w", err)
		}
	}
	return preds, labels, nil
}

// scan calls fn for each record of topic written at or after since (all
// when since is zero) up to the end each partition has when scan starts.
// A topic that does not exist has nothing to scan.
func scan(ctx context.Context, brokers []string, topic string, since time.Time, fn func(kafkago.Message)) error {
	_, err := kafka.ReadSince(ctx, brokers, topic, since, func(m kafka.Message) error {
		fn(m)
		return nil
	})
	return err
}
