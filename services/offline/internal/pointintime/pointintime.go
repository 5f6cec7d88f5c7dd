// Package pointintime computes point-in-time training sets: for every row
// of a spine (join key values, an instant) and every requested feature, the
// value GetOnlineFeatures would have answered at that instant.
//
// The history of the views' source topics is replayed through the
// featurizer's own aggregation code (libs/aggregate: Router, then Engine),
// in memory, in arrival order; before the records that arrived after an
// instant T are applied, the spine rows at T are answered from the tiles
// of their entities with the featureserver's own read semantics
// (libs/tiles/served: sawtooth windows, merge order, value conversion,
// NOT_FOUND/STALE, event time). See the package README section "Training
// sets" for the precise contract.
//
// Order of replay (arrival mode, the default). A record's arrival time is
// its Kafka record time, made monotonic per partition (the largest record
// time at or before it in its partition: a consumer cannot have read a
// record before the ones ahead of it). Records are applied in order of
// (arrival time, topic, partition, offset), and the row changes one record
// makes in the order the router emits them. A record counts for an instant
// T when its arrival time is <= T.
//
// EventTimeOnly mode. Every row change whose event time is <= T counts,
// whenever it arrived: changes are applied in order of (event time, topic,
// partition, offset), so none is late. CDC de-duplication (by LSN) still
// happens in each partition's offset order.
package pointintime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/served"
)

// Spine is the rows a training set is computed for.
type Spine interface {
	// Len is the number of rows.
	Len() int
	// EventMs is row i's instant (event_timestamp), Unix ms.
	EventMs(i int) int64
	// JoinKey returns row i's value of join key key, if it has one.
	JoinKey(i int, key string) (string, bool)
}

// History yields the archived records of source topics.
type History interface {
	// Scan calls fn with every record of topic, each partition's records
	// in offset order (partitions may interleave or follow each other).
	// Record.TimeMs is the Kafka record time (arrival). fn must not keep
	// the record's Value after it returns; an error from fn ends the scan
	// and is returned.
	Scan(ctx context.Context, topic string, fn func(aggregate.Record) error) error
}

// HistoryFunc adapts a function to History.
type HistoryFunc func(ctx context.Context, topic string, fn func(aggregate.Record) error) error

// Scan implements History.
func (f HistoryFunc) Scan(ctx context.Context, topic string, fn func(aggregate.Record) error) error {
	return f(ctx, topic, fn)
}

// Records is an in-memory History: records of any topics, each
// partition's in offset order.
type Records []aggregate.Record

// Scan implements History.
func (rs Records) Scan(ctx context.Context, topic string, fn func(aggregate.Record) error) error {
	for i, r := range rs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if r.Topic == topic {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// DefaultPartitions is the featurizer's default --repartition-partitions.
const DefaultPartitions = 8

// Request is one training-set computation.
type Request struct {
	// Views are the feature views (featurespec.LoadDir), at least those
	// the refs name.
	Views []*featurespec.View
	// Refs are "view:feature" or "view:*".
	Refs    []string
	Spine   Spine
	History History
	// EventTimeOnly counts every record whose event time is <= the row's
	// instant, whenever it arrived (history imported after the fact).
	EventTimeOnly bool
	// Shard selects part of the spine (see Shard); zero is all of it.
	Shard Shard
	// Partitions is the featurizer's repartition partition count (its
	// --repartition-partitions); 0 is DefaultPartitions. Each partition
	// keeps its own view clocks, which decide when tiles expire: the same
	// count reproduces the featurizer's tiles exactly.
	Partitions int
}

// Result is a computed training set (without the spine's own columns).
type Result struct {
	Features []Feature
	// Rows are the spine row indexes of the result's rows, in spine
	// order: all of them, or those of the shard.
	Rows []int
	// Values are len(Rows) × len(Features) values, row-major.
	Values []served.Value
	Stats  Stats
}

// Row returns the values of result row k (spine row Rows[k]).
func (r *Result) Row(k int) []served.Value {
	n := len(r.Features)
	return r.Values[k*n : (k+1)*n]
}

// Statuses counts the values without a value (NOT_FOUND) and the stale ones.
func (r *Result) Statuses() (notFound, stale int64) {
	for _, v := range r.Values {
		switch v.Status {
		case served.StatusNotFound:
			notFound++
		case served.StatusStale:
			stale++
		}
	}
	return notFound, stale
}

// Stats count what a computation read and did.
type Stats struct {
	// Records read from the history.
	Records int64
	// Changes are the row changes of the spine's entities replayed.
	Changes int64
	// Late inserts dropped, Invalid records (undecodable, missing join key
	// or event time), Duplicates (CDC events dropped by LSN), as the
	// featurizer counts them.
	Late, Invalid, Duplicates int64
}

// change is one routed row change kept for replay.
type change struct {
	at        int64
	topic     int32
	partition int32
	offset    int64
	sub       int32
	rpart     int32
	chunk     int32
	start     int32
	end       int32
}

// arenaChunk is the size of the chunks routed changes are kept in (one
// growing buffer would copy itself as it grows).
const arenaChunk = 4 << 20

// plan is the per-view part of a computation.
type plan struct {
	view     *featurespec.View
	maxAgeMs int64
	// retention per resolution (ms): a tile is readable at T while
	// start + retention > T (the featureserver's store expiry).
	retention map[int64]int64
	feats     []featPlan
}

type featPlan struct {
	col   int // index in Result.Features
	slot  aggregate.FeatureSlot
	agg   served.Agg
	winMs int64
}

// Compute computes a training set. Errors name the bad ref, spine row or
// the history's error.
func Compute(ctx context.Context, req Request) (*Result, error) {
	if req.Spine == nil {
		return nil, errors.New("training set: no spine")
	}
	if req.History == nil {
		return nil, errors.New("training set: no history")
	}
	if err := req.Shard.Validate(); err != nil {
		return nil, err
	}
	parts := req.Partitions
	if parts == 0 {
		parts = DefaultPartitions
	}
	if parts < 0 {
		return nil, fmt.Errorf("partitions: %d, want at least 1", parts)
	}
	feats, err := ResolveRefs(req.Views, req.Refs)
	if err != nil {
		return nil, err
	}
	// The views asked for, whole: a tile's state and expiry depend on all
	// of its view's features.
	var views []*featurespec.View
	for _, f := range feats {
		if !slices.Contains(views, f.View) {
			views = append(views, f.View)
		}
	}
	eng, err := aggregate.New(views, aggregate.WithPartitions(parts))
	if err != nil {
		return nil, err
	}
	plans := make([]plan, len(views))
	for vi, v := range views {
		p := plan{view: v, maxAgeMs: time.Duration(v.MaxAge).Milliseconds(), retention: map[int64]int64{}}
		for _, f := range v.Features {
			res := tiles.ResolutionOf(f)
			p.retention[res.Milliseconds()] = tiles.Retention(v, res).Milliseconds()
		}
		for col, f := range feats {
			if f.View != v {
				continue
			}
			slot, ok := eng.Slot(v.Name, f.Spec.Name)
			if !ok {
				return nil, fmt.Errorf("feature %s: not kept by the aggregation engine", f.Ref)
			}
			p.feats = append(p.feats, featPlan{col: col, slot: slot, agg: served.AggOf(f.Spec.Aggregation), winMs: time.Duration(f.Spec.Window).Milliseconds()})
		}
		plans[vi] = p
	}

	// The spine: entity ids per row and view, the shard's rows, and the
	// entities whose changes are worth keeping.
	n := req.Spine.Len()
	nv := len(views)
	var rows []int
	var ids []string
	needed := map[string]struct{}{}
	rowIDs := make([]string, nv)
	for i := range n {
		for vi, v := range views {
			id, err := entityID(req.Spine, i, v)
			if err != nil {
				return nil, err
			}
			rowIDs[vi] = id
		}
		if !req.Shard.Has(rowIDs[0]) {
			continue
		}
		rows = append(rows, i)
		for vi, v := range views {
			ids = append(ids, rowIDs[vi])
			needed[v.Name+"|"+rowIDs[vi]] = struct{}{}
		}
	}

	// The history: route every record, keep the changes of needed
	// entities with their replay position.
	var (
		topics  []string
		changes []change
		arena   [][]byte
		stats   Stats
	)
	for _, v := range views {
		if !slices.Contains(topics, v.Source.Topic) {
			topics = append(topics, v.Source.Topic)
		}
	}
	slices.Sort(topics)
	router := eng.Router()
	for ti, topic := range topics {
		arrived := map[int]int64{}
		var rec aggregate.Record
		var sub int32
		var routeErr error
		emit := func(key, value []byte) error {
			if _, ok := needed[string(key)]; !ok {
				return nil
			}
			if len(arena) == 0 || cap(arena[len(arena)-1])-len(arena[len(arena)-1]) < len(value) {
				arena = append(arena, make([]byte, 0, max(arenaChunk, len(value))))
			}
			last := len(arena) - 1
			c := change{topic: int32(ti), partition: int32(rec.Partition), offset: rec.Offset, sub: sub,
				rpart: int32(aggregate.PartitionOfKey(key, parts)), chunk: int32(last), start: int32(len(arena[last]))}
			sub++
			if req.EventTimeOnly {
				ts, err := aggregate.RoutedEventTime(value)
				if err != nil {
					routeErr = err
					return err
				}
				c.at = ts
			} else {
				c.at = arrived[rec.Partition]
			}
			arena[last] = append(arena[last], value...)
			c.end = int32(len(arena[last]))
			changes = append(changes, c)
			return nil
		}
		err := req.History.Scan(ctx, topic, func(r aggregate.Record) error {
			if r.Topic != topic {
				return fmt.Errorf("history of topic %s yielded a record of topic %q", topic, r.Topic)
			}
			stats.Records++
			if stats.Records%8192 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if last, ok := arrived[r.Partition]; !ok || r.TimeMs > last {
				arrived[r.Partition] = r.TimeMs
			}
			rec, sub = r, 0
			// A record that cannot be decoded is counted (Invalid) and
			// skipped, as the featurizer does.
			_ = router.Route(r, emit)
			return routeErr
		})
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", topic, err)
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition),
			cmp.Compare(a.offset, b.offset), cmp.Compare(a.sub, b.sub))
	})

	// Replay, answering the rows in order of their instants.
	order := make([]int32, len(rows))
	for k := range order {
		order[k] = int32(k)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		return cmp.Compare(req.Spine.EventMs(rows[a]), req.Spine.EventMs(rows[b]))
	})
	res := &Result{Features: feats, Rows: rows, Values: make([]served.Value, len(rows)*len(feats))}
	var buf []aggregate.TileRef
	var scratch []byte
	var repos aggregate.Repositioner
	next := 0
	for i, k := range order {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		t := req.Spine.EventMs(rows[k])
		applied := false
		for ; next < len(changes) && changes[next].at <= t; next++ {
			c := &changes[next]
			value := arena[c.chunk][c.start:c.end]
			if req.EventTimeOnly {
				// Out of source order: positions in replay order, so
				// none is taken for a replay of a later one.
				scratch, _ = repos.Append(scratch[:0], value, "offline.replay", 0, int64(next))
				value = scratch
			}
			// Routed records come from this process's router: they decode.
			_, _ = eng.ApplyRouted(c.rpart, value)
			applied = true
		}
		if applied {
			eng.DropExpired()
		}
		out := res.Row(int(k))
		for vi := range plans {
			buf = answer(eng, &plans[vi], ids[int(k)*nv+vi], t, out, buf[:0])
		}
	}
	stats.Changes = int64(len(changes))
	stats.Late = eng.C.Late.Load()
	stats.Invalid = eng.C.Invalid.Load()
	stats.Duplicates = eng.C.Duplicates.Load()
	res.Stats = stats
	return res, nil
}

// answer sets the features of plan p for entity at nowMs into out, as the
// featureserver reads them: its unexpired tiles in order, each feature
// merged over its sawtooth window.
func answer(eng *aggregate.Engine, p *plan, entity string, nowMs int64, out []served.Value, buf []aggregate.TileRef) []aggregate.TileRef {
	all := eng.AppendEntityTiles(buf, p.view.Name, entity)
	// The store's expiry: a tile is readable while start + retention > now.
	ts := all[:0]
	var entityNewest int64
	for _, t := range all {
		if r := t.ResolutionMs(); r > 0 && t.StartMs()+p.retention[r] <= nowMs {
			continue
		}
		ts = append(ts, t)
		entityNewest = max(entityNewest, t.MaxEventMs())
	}
	if len(ts) == 0 {
		for _, f := range p.feats {
			out[f.col] = served.NotFound
		}
		return all
	}
	for _, f := range p.feats {
		from, to := served.Bounds(nowMs, f.winMs, f.slot.ResolutionMs)
		var w served.Window
		for _, t := range ts {
			if t.ResolutionMs() != f.slot.ResolutionMs || t.StartMs() < from || t.StartMs() > to {
				continue
			}
			if ir, ok := t.State(f.slot); ok {
				w.Add(ir, t.MaxEventMs())
			}
		}
		served.Set(&out[f.col], &w.IR, w.Newest, entityNewest, f.agg, p.maxAgeMs, nowMs)
	}
	return all
}

// entityID is row i's entity of view v, as the featureserver forms it.
func entityID(s Spine, i int, v *featurespec.View) (string, error) {
	keys := v.Entity.JoinKeys
	vals := make([]string, 0, len(keys))
	for _, k := range keys {
		id, ok := s.JoinKey(i, k)
		if !ok || id == "" {
			return "", fmt.Errorf("spine row %d: no value for join key %q of feature view %q", i+1, k, v.Name)
		}
		vals = append(vals, id)
	}
	if len(vals) == 1 {
		return vals[0], nil
	}
	return tiles.EntityID(vals), nil
}
