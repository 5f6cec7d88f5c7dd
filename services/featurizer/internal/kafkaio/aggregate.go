package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/kafka"
)

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	Brokers []string
	// GroupID is the consumer group of the aggregation stage.
	GroupID string
	// Topic is the repartition topic (aggregate.RepartitionTopic).
	Topic string
	// TilesTopic is the compacted tile topic state is restored from.
	TilesTopic string
	// FlushInterval and FlushEvery (routed changes) bound how long tiles
	// are coalesced before they are emitted and the repartition offsets
	// committed.
	FlushInterval time.Duration
	FlushEvery    int
	// Tracer, when set, traces sampled batch records to the tiles they
	// change (see LinkHeader).
	Tracer trace.Tracer
	Log    *slog.Logger
}

// Aggregator is the aggregation stage: a member of a consumer group on the
// repartition topic. kafka-go's group Reader hides assignments, so it uses
// the lower-level ConsumerGroup API: on every generation it keeps the
// partitions whose state is exactly at the committed offset, drops those
// it lost, restores the tiles of the partitions it gained from
// features.tiles, and then reads each assigned partition from its
// committed offset. Tiles are emitted (acknowledged) before offsets are
// committed, so a partition taken over after a crash or rebalance resumes
// from state at or after its committed offset; records replayed from there
// are skipped by the per-tile source offsets (see core).
type Aggregator struct {
	cfg AggregatorConfig
	eng *aggregate.Engine
	out Writer

	engMu sync.Mutex
	// next is, per partition held, the offset the engine's state is at;
	// clean says it is known to be what the group committed (no flush or
	// commit failed since).
	next  map[int32]int64
	clean bool
	// msgs is the tile records of a flush, reused.
	msgs []kafka.Message
	// traced is what sampled records changed since the last flush (nil
	// without a tracer); guarded by engMu.
	traced *tileTracer
	ready  atomic.Bool
	gens   atomic.Int64
	lagTracker
}

// NewAggregator builds an aggregation stage around eng writing tiles with out.
func NewAggregator(cfg AggregatorConfig, eng *aggregate.Engine, out Writer) (*Aggregator, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("aggregator: no brokers")
	case cfg.GroupID == "":
		return nil, errors.New("aggregator: no group id")
	case cfg.Topic == "" || cfg.TilesTopic == "":
		return nil, errors.New("aggregator: topic and tiles topic are required")
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 50000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Aggregator{cfg: cfg, eng: eng, out: out, next: map[int32]int64{}}
	if cfg.Tracer != nil {
		a.traced = &tileTracer{tr: cfg.Tracer}
	}
	return a, nil
}

// Ready reports whether the first assignment's state was restored.
func (a *Aggregator) Ready() bool { return a.ready.Load() }

// Generations counts the group generations this member took part in.
func (a *Aggregator) Generations() int64 { return a.gens.Load() }

// WithEngine runs fn with exclusive use of the engine.
func (a *Aggregator) WithEngine(fn func(*aggregate.Engine)) {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	fn(a.eng)
}

// Run takes part in the consumer group until ctx ends; on the way out it
// emits the last tiles and commits.
func (a *Aggregator) Run(ctx context.Context) error {
	n, err := PartitionCount(ctx, a.cfg.Brokers, a.cfg.Topic)
	if err != nil {
		return err
	}
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                a.cfg.GroupID,
		Brokers:           a.cfg.Brokers,
		Topics:            []string{a.cfg.Topic},
		StartOffset:       kafkago.FirstOffset,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("aggregator: consumer group: %w", err)
	}
	defer func() {
		if err := cg.Close(); err != nil {
			a.cfg.Log.Warn("close consumer group", "err", err)
		}
	}()
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.cfg.Log.Warn("join consumer group", "group", a.cfg.GroupID, "err", err)
			continue
		}
		a.gens.Add(1)
		done := make(chan error, 1)
		gen.Start(func(gctx context.Context) { done <- a.generation(ctx, gctx, gen, n) })
		if err := <-done; err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// PartitionCount is the number of partitions of topic; entities are
// spread over it, so it must not change while tiles exist.
func PartitionCount(ctx context.Context, brokers []string, topic string) (int, error) {
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", brokers[0], err)
	}
	defer func() { _ = conn.Close() }()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return 0, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	if len(parts) == 0 {
		return 0, fmt.Errorf("topic %s has no partitions", topic)
	}
	return len(parts), nil
}

// maxTransientFetchErrors bounds the consecutive leader errors a routed
// partition's reader waits through (with the reader's backoff, seconds)
// before the generation fails.
const maxTransientFetchErrors = 100

// leaderMoving reports whether err says a partition has no serving leader
// for the moment.
func leaderMoving(err error) bool {
	return errors.Is(err, kafkago.NotLeaderForPartition) || errors.Is(err, kafkago.LeaderNotAvailable)
}

type fetched struct {
	m   kafkago.Message
	err error
}

// generation runs one group generation: it ends when the group rebalances
// (gctx) or the service stops (ctx).
func (a *Aggregator) generation(ctx, gctx context.Context, gen *kafkago.Generation, n int) error {
	if gctx.Err() != nil {
		// The generation ended before Start registered this function, so
		// the group does not wait for it: touch nothing (see flush).
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(gctx, cancel)
	defer stop()
	log := a.cfg.Log

	assigned := map[int32]int64{}
	for _, pa := range gen.Assignments[a.cfg.Topic] {
		assigned[int32(pa.ID)] = pa.Offset
	}
	a.engMu.Lock()
	// Keep a partition only if this instance's state of it is exactly at
	// the offset the group resumes from; otherwise restore it afresh.
	for _, p := range a.eng.Partitions() {
		off, ok := assigned[p]
		if next, held := a.next[p]; !a.clean || !ok || !held || next != off {
			a.eng.Drop(p)
			delete(a.next, p)
			a.forget(a.cfg.Topic, int(p))
		}
	}
	restore := map[int32]bool{}
	for p := range assigned {
		if _, held := a.next[p]; !held {
			restore[p] = true
		}
	}
	var err error
	if len(restore) > 0 {
		start := time.Now()
		var kept int
		kept, err = Restore(rctx, a.cfg.Brokers, a.cfg.TilesTopic, a.eng, restore, n, log)
		for p := range restore {
			a.eng.Open(p)
		}
		log.Info("tile state restored", "generation", gen.ID, "partitions", slices.Sorted(maps.Keys(restore)), "records", kept,
			"tiles", a.eng.C.Tiles.Load(), "took", time.Since(start).Round(time.Millisecond))
	}
	a.engMu.Unlock()
	if err != nil {
		if rctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("restore tiles: %w", err)
	}
	// Emit tombstones of tiles that expired while nobody held them.
	if err := a.flush(rctx); err != nil {
		if rctx.Err() != nil {
			return nil
		}
		return err
	}
	a.engMu.Lock()
	for p, off := range assigned {
		a.next[p] = off
	}
	a.engMu.Unlock()
	a.clean = true
	a.ready.Store(true)

	ch := make(chan fetched, 1024)
	var wg sync.WaitGroup
	var readers []*kafkago.Reader
	for p, off := range assigned {
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:        a.cfg.Brokers,
			Topic:          a.cfg.Topic,
			Partition:      int(p),
			MinBytes:       1,
			MaxBytes:       16 << 20,
			MaxWait:        100 * time.Millisecond,
			ReadBackoffMin: 10 * time.Millisecond,
			ReadBackoffMax: 200 * time.Millisecond,
		})
		if err := r.SetOffset(off); err != nil {
			_ = r.Close()
			return fmt.Errorf("seek %s/%d to %d: %w", a.cfg.Topic, p, off, err)
		}
		readers = append(readers, r)
		wg.Go(func() {
			transient := 0
			for {
				m, err := r.FetchMessage(rctx)
				// A partition whose leader is loading or moving answers
				// NOT_LEADER_OR_FOLLOWER or LEADER_NOT_AVAILABLE for a
				// while on Apache Kafka (the embedded broker never does,
				// which hid this); the reader retries with backoff.
				if err != nil && rctx.Err() == nil && leaderMoving(err) && transient < maxTransientFetchErrors {
					transient++
					log.Warn("fetch routed changes: partition leader not ready, retrying", "partition", p, "err", err)
					continue
				}
				if err != nil {
					if rctx.Err() == nil {
						select {
						case ch <- fetched{err: fmt.Errorf("read %s/%d: %w", a.cfg.Topic, p, err)}:
						case <-rctx.Done():
						}
					}
					return
				}
				transient = 0
				select {
				case ch <- fetched{m: m}:
				case <-rctx.Done():
					return
				}
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, r := range readers {
			_ = r.Close()
		}
	}()

	pending := 0
	commit := func(cctx context.Context) error {
		if err := a.flush(cctx); err != nil {
			return err
		}
		offs := map[int]int64{}
		for p := range assigned {
			offs[int(p)] = a.next[p]
		}
		if err := gen.CommitOffsets(map[string]map[int]int64{a.cfg.Topic: offs}); err != nil {
			// The group moved on (a rebalance): whoever gets these
			// partitions restores them from the tiles just emitted and
			// replays from the last committed offset.
			log.Warn("commit offsets", "generation", gen.ID, "err", err)
			a.clean = false
			return nil
		}
		pending = 0
		return nil
	}
	tick := time.NewTicker(a.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case f := <-ch:
			if f.err != nil {
				return f.err
			}
			m := &f.m
			var span trace.Span
			if a.traced != nil && kafka.Sampled(m) {
				_, span = kafka.StartProcess(rctx, a.cfg.Tracer, m, a.cfg.GroupID)
			}
			a.engMu.Lock()
			changes, err := a.eng.ApplyRouted(int32(m.Partition), m.Value)
			a.next[int32(m.Partition)] = m.Offset + 1
			if span != nil {
				a.traced.applied(span.SpanContext(), m)
			}
			a.engMu.Unlock()
			if span != nil {
				span.SetAttributes(attribute.Int("tributary.changes_applied", changes))
				kafka.EndSpan(span, err)
			}
			if err != nil {
				if k := a.eng.C.Invalid.Load(); k <= 10 || k%10000 == 0 {
					log.Warn("skip invalid routed changes", "partition", m.Partition, "offset", m.Offset, "invalid_total", k, "err", err)
				}
			}
			a.observe(m)
			pending += changes
			if pending >= a.cfg.FlushEvery {
				if err := commit(rctx); err != nil {
					return a.stopped(rctx, err)
				}
			}
		case <-tick.C:
			if pending > 0 {
				if err := commit(rctx); err != nil {
					return a.stopped(rctx, err)
				}
			}
		case <-rctx.Done():
			// Stopping or rebalancing: emit and commit what was applied.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer scancel()
			if pending > 0 {
				if err := commit(sctx); err != nil {
					return err
				}
			}
			return nil
		}
	}
}

// stopped turns an error seen while the generation was ending into a
// clean end (the final flush then runs on the way out of the next call).
func (a *Aggregator) stopped(rctx context.Context, err error) error {
	if rctx.Err() != nil {
		return nil
	}
	return err
}

// emitTimeout bounds one flush's tile write; it is the group's rebalance
// timeout, the longest a generation function may take to end.
const emitTimeout = 10 * time.Second

// flush emits what the engine changed since the last flush. On failure the
// state is no longer known to match the topic, so every partition is
// restored on the next generation.
func (a *Aggregator) flush(ctx context.Context) error {
	a.engMu.Lock()
	outs, err := a.eng.Flush()
	traced := a.traced
	if traced != nil && len(traced.byKey) > 0 {
		// The spans start from a copy: records applied while this flush
		// writes are traced to the next one.
		traced = &tileTracer{tr: traced.tr, byKey: a.traced.byKey}
		a.traced.byKey = nil
	}
	a.engMu.Unlock()
	if err == nil {
		// The write is not cut short when the generation or the service
		// ends: kafka-go's Writer still sends a batch whose WriteMessages
		// returned on a cancelled context, so an abandoned write could land
		// after the next owner of these partitions restored and rewrote
		// the same tiles, and a later restore would read the stale tiles
		// while the committed offsets are past the records they miss. The
		// group waits for the generation function, so the write ends
		// (acknowledged or failed) before this member rejoins.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), emitTimeout)
		a.msgs, err = emit(wctx, a.out, outs, a.msgs, traced)
		cancel()
	}
	if err != nil {
		a.clean = false
		return err
	}
	// Acknowledged: the writer holds no reference to the tiles any more.
	a.engMu.Lock()
	a.eng.Recycle()
	a.engMu.Unlock()
	return nil
}

// Positions returns, per partition held, the offset of the next record to
// apply.
func (a *Aggregator) Positions() map[int32]int64 {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	return maps.Clone(a.next)
}
