package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/tiles"
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
	return maps.Clone(l.lag)
}

// RouteHandler is the source stage's consumer handler: it routes source
// records to routed changes, packs each repartition partition's changes
// into batch records (aggregate.AppendBatchEntry, at most RecordBytes each),
// and on Flush writes them to the repartition topic before the consumer
// commits the source offsets.
//
// A flush writes each repartition partition's batch records in order, in
// writes of at most one producer batch each, one after another, and stops
// writing a partition at its first failed write. So what a failed flush
// leaves on a partition is a prefix of what it meant to write there, never
// a gap: the aggregator skips a replayed change when a tile already holds
// a later change of the same source partition (core), which would drop the
// changes of a lost batch whose successor landed. (kafka-go's Writer,
// handed a whole flush, splits a partition's records into batches and
// keeps writing the later ones after one failed.)
type RouteHandler struct {
	r   *aggregate.Router
	out Writer
	log *slog.Logger
	c   *aggregate.Counters
	cfg RouteConfig
	// parts holds, per repartition partition, the batch records not yet
	// acknowledged, in source order, and the one being filled.
	parts []partBatches
	lagTracker
}

// partBatches is one repartition partition's routed changes not yet
// written.
type partBatches struct {
	key    []byte
	sealed []kafka.Message
	open   []byte
	time   time.Time
	// links are the sampled source records with changes in open.
	links []routeLink
}

// seal closes the batch record being filled.
func (pb *partBatches) seal() {
	if len(pb.open) == 0 {
		return
	}
	pb.sealed = append(pb.sealed, kafka.Message{Key: pb.key, Value: pb.open, Time: pb.time, Headers: pb.linkHeaders()})
	pb.open = nil
}

// RouteConfig configures a RouteHandler.
type RouteConfig struct {
	// Partitions is the repartition topic's partition count, as the
	// producer's Balancer sees it.
	Partitions int
	// BatchSize is the producer's batch size (kafka.ProducerConfig.BatchSize):
	// one write holds at most this many records, so kafka-go sends it as a
	// single batch.
	BatchSize int
	// RecordBytes is the size at which a batch record of routed changes
	// is closed and a new one started (default DefaultRoutedRecordBytes).
	RecordBytes int
	// Tracer, when set, traces batch records holding changes of sampled
	// source records (see LinkHeader); the consumer must hand Handle the
	// source record's span (kafka.ConsumerConfig.Tracer).
	Tracer trace.Tracer
	Log    *slog.Logger
}

// RoutedBatchSize is the batch size of RoutedProducerConfig: a write of
// batch records (DefaultRoutedRecordBytes each) fills maxWriteBytes with
// fewer. kafka-go allocates room for a whole batch per write and
// partition, so it is not set higher than needed.
const RoutedBatchSize = 32

// DefaultRoutedRecordBytes is the default RouteConfig.RecordBytes: large
// enough that Kafka's per-record cost vanishes (hundreds of changes per
// record), small next to the broker's record size limit (1 MB).
const DefaultRoutedRecordBytes = 64 << 10

// RoutedProducerConfig configures the producer of routed records a
// RouteHandler with BatchSize RoutedBatchSize writes with: it places
// records with Balancer, and since every write is one whole batch, a batch
// does not wait to fill.
func RoutedProducerConfig(brokers []string) kafka.ProducerConfig {
	return kafka.ProducerConfig{Brokers: brokers, Topic: aggregate.RepartitionTopic, BatchSize: RoutedBatchSize,
		BatchTimeout: 100 * time.Microsecond, Balancer: Balancer()}
}

// maxWriteBytes bounds the estimated size of one write: below kafka-go's
// default batch size in bytes (1 MiB), so a write is never split.
const maxWriteBytes = 900 << 10

// NewRouteHandler builds a handler routing with r (counting into c) and
// writing routed records with out (a producer on aggregate.RepartitionTopic
// using Balancer, with cfg.BatchSize).
func NewRouteHandler(r *aggregate.Router, c *aggregate.Counters, out Writer, cfg RouteConfig) *RouteHandler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Partitions = max(1, cfg.Partitions)
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100 // kafka-go's default
	}
	if cfg.RecordBytes <= 0 {
		cfg.RecordBytes = DefaultRoutedRecordBytes
	}
	cfg.RecordBytes = min(cfg.RecordBytes, maxWriteBytes/2)
	h := &RouteHandler{r: r, c: c, out: out, log: cfg.Log, cfg: cfg, parts: make([]partBatches, cfg.Partitions)}
	for p := range h.parts {
		h.parts[p].key = aggregate.BatchKey(p)
	}
	return h
}

// Balancer places routed batch records on the repartition partition their
// key names (aggregate.BatchKey), and single routed records on the partition of
// their key (aggregate.PartitionOfKey), the placement a starting aggregator
// restores by.
func Balancer() kafkago.Balancer { return kafkago.BalancerFunc(balance) }

func balance(m kafkago.Message, partitions ...int) int {
	if p, ok := aggregate.PartitionOfBatchKey(m.Key); ok {
		return partitions[p%len(partitions)]
	}
	return partitions[aggregate.PartitionOfKey(m.Key, len(partitions))]
}

// Handle routes one record. Undecodable records are counted and skipped
// (logged for the first few and then rarely), never retried: a poison
// record must not stop the featurizer.
func (h *RouteHandler) Handle(ctx context.Context, m kafka.Message) error {
	var sc trace.SpanContext
	if h.cfg.Tracer != nil {
		sc = trace.SpanContextFromContext(ctx)
	}
	err := h.r.Route(aggregate.Record{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		TimeMs:    m.Time.UnixMilli(),
		Value:     m.Value,
	}, func(key, value []byte) error {
		pb := &h.parts[aggregate.PartitionOfKey(key, h.cfg.Partitions)]
		if pb.open == nil {
			pb.open = aggregate.NewBatch(make([]byte, 0, h.cfg.RecordBytes+h.cfg.RecordBytes/8))
			pb.time = m.Time
		}
		pb.open = aggregate.AppendBatchEntry(pb.open, value)
		if sc.IsSampled() {
			pb.addLink(sc, key)
		}
		if len(pb.open) >= h.cfg.RecordBytes {
			pb.seal()
		}
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

// Flush writes the routed changes of the records handled since the last
// flush, the partitions in parallel, each in order (see RouteHandler). On
// failure the batch records not acknowledged are kept and written first
// next time; the caller must not commit the source offsets.
func (h *RouteHandler) Flush(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(h.parts))
	for p := range h.parts {
		pb := &h.parts[p]
		pb.seal()
		if len(pb.sealed) == 0 {
			continue
		}
		wg.Go(func() {
			msgs := pb.sealed
			done, err := h.writeInOrder(ctx, p, msgs)
			rest := msgs[done:]
			clear(msgs[len(rest):])
			pb.sealed = msgs[:copy(msgs, rest)]
			if err != nil {
				errs[p] = fmt.Errorf("repartition partition %d: %d of %d routed batch records written: %w", p, done, len(msgs), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeInOrder writes msgs (all for one partition) in writes that each fit
// one producer batch, one after another, and stops at the first failure.
// It returns how many records were acknowledged.
func (h *RouteHandler) writeInOrder(ctx context.Context, p int, msgs []kafka.Message) (int, error) {
	done := 0
	var spans []trace.Span
	for done < len(msgs) {
		end, size := done, 0
		for end < len(msgs) && end-done < h.cfg.BatchSize {
			// The trace headers go in now, so the size counts them.
			if h.cfg.Tracer != nil && len(msgs[end].Headers) > 0 {
				if span := startBatchSpan(ctx, h.cfg.Tracer, &msgs[end], p); span != nil {
					spans = append(spans, span)
				}
			}
			kafka.InjectTrace(ctx, &msgs[end])
			n := recordSize(&msgs[end])
			if end > done && size+n > maxWriteBytes {
				break
			}
			size += n
			end++
		}
		err := h.out.Write(ctx, msgs[done:end]...)
		for _, s := range spans {
			kafka.EndSpan(s, err)
		}
		spans = spans[:0]
		if err != nil {
			return done, firstWriteError(err)
		}
		done = end
	}
	return done, nil
}

// firstWriteError shortens kafka-go's error of a failed write, which
// repeats a batch's error once per record, to its first error.
func firstWriteError(err error) error {
	var we kafkago.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	for _, e := range we {
		if e != nil {
			return fmt.Errorf("%d of %d records not written: %w", we.Count(), len(we), e)
		}
	}
	return err
}

// recordSize is at least what kafka-go counts for m against a batch's
// byte limit (key, value, headers and the record framing).
func recordSize(m *kafka.Message) int {
	n := 64 + len(m.Key) + len(m.Value)
	for _, hd := range m.Headers {
		n += 16 + len(hd.Key) + len(hd.Value)
	}
	return n
}

// Emit writes core outputs as features.tiles records, building them in
// msgs (returned for reuse: the writer is done with them once Write
// returned).
func Emit(ctx context.Context, w Writer, outs []aggregate.Output, msgs []kafka.Message) ([]kafka.Message, error) {
	return emit(ctx, w, outs, msgs, nil)
}

// emit is Emit with the tiles tt traced getting their send spans.
func emit(ctx context.Context, w Writer, outs []aggregate.Output, msgs []kafka.Message, tt *tileTracer) ([]kafka.Message, error) {
	if len(outs) == 0 {
		return msgs, nil
	}
	msgs = msgs[:0]
	for _, o := range outs {
		msgs = append(msgs, kafka.Message{Key: o.Key, Value: o.Value})
	}
	spans := tt.start(ctx, tiles.Topic, msgs)
	err := w.Write(ctx, msgs...)
	for _, s := range spans {
		kafka.EndSpan(s, err)
	}
	clear(msgs)
	if err != nil {
		return msgs, fmt.Errorf("emit %d tiles: %w", len(outs), err)
	}
	return msgs, nil
}
