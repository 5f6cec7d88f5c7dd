// Package core is the featurizer's application core: it turns source
// records into per-entity tiles of intermediate aggregates and decides which
// tiles to emit and which to expire. It does no I/O; the Kafka adapters feed
// it records and write out what Flush returns.
//
// Time. Each entity of a view has a watermark, the newest event time applied
// to it. An insert older than the watermark minus the view's allowed
// lateness is counted and dropped; one within it updates its own tile. The
// view's clock is the newest event time applied to any of its entities;
// a tile expires (and a tombstone is emitted) once start + retention +
// lateness <= clock, where retention is the longest window kept at the
// tile's resolution plus one resolution: by then no read at or after the
// clock can include it. Latest values never expire.
//
// Exactly-once effect. A tile records, per source partition, the offset of
// the last record applied to it (tiles.Tile.Offsets). Records replayed after
// a restart (emitted before the crash but not yet committed) are skipped per
// tile, so state restored from features.tiles plus the replay equals the
// state of a featurizer that never stopped.
package core

import (
	"container/heap"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// Record is one source record.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	// TimeMs is the Kafka record time, the event time of views without an
	// event_time field.
	TimeMs int64
	Value  []byte
}

// Counters are the engine's running totals; safe to read concurrently.
type Counters struct {
	// Records counts records offered to Apply on a source topic.
	Records atomic.Int64
	// Applied counts row changes applied to tiles (one record may make
	// several: one per view, and an update retracts and adds).
	Applied atomic.Int64
	// Late counts inserts dropped for arriving after the allowed lateness.
	Late atomic.Int64
	// Invalid counts records (or a view's part of one) that could not be
	// decoded: bad JSON, a missing join key or event time.
	Invalid atomic.Int64
	// Duplicates counts CDC events dropped by LSN and records skipped
	// because their tiles already held them (replay after a restart).
	Duplicates atomic.Int64
	// Emitted counts tiles returned by Flush; Expired counts tombstones.
	Emitted atomic.Int64
	Expired atomic.Int64
	// Tiles is the number of tiles held.
	Tiles atomic.Int64
}

// Output is one record for features.tiles: a tile's full state, or a
// tombstone (Value nil) for an expired tile.
type Output struct {
	Key   string
	Value []byte
	// Tile is the state that was encoded (nil for a tombstone).
	Tile *tiles.Tile
}

type featPlan struct {
	name, column, agg string
}

// resGroup holds a view's features kept at one resolution.
type resGroup struct {
	resMs int64
	// retentionMs is how long after its start a tile stays readable; 0
	// keeps it forever.
	retentionMs int64
	feats       []featPlan
}

type viewPlan struct {
	idx        int32
	view       *featurespec.View
	groups     []*resGroup
	latenessMs int64
	clock      int64
	hasClock   bool
	expiry     expiryQueue
}

type entKey struct {
	view   int32
	entity string
}

type slot struct {
	resMs, startMs int64
}

type entity struct {
	wm    int64
	tiles map[slot]*tileState
}

type tileState struct {
	t        *tiles.Tile
	ent      entKey
	group    *resGroup
	seq      uint64
	dirty    bool
	dead     bool
	expireAt int64
}

// Engine holds the tile state of a set of views. It is not safe for
// concurrent use: the consumer calls it from one goroutine.
type Engine struct {
	views   []*viewPlan
	byName  map[string]*viewPlan
	byTopic map[string][]*viewPlan
	ents    map[entKey]*entity
	dirty   []*tileState
	tombs   []string
	seq     uint64
	dedupe  *cdc.Deduper
	srcs    map[srcKey]string
	// replayTo is, per source partition, the highest offset any restored
	// tile holds. Records up to it are replays of records handled before a
	// restart; see applyChange.
	replayTo map[string]int64

	// C are the engine's counters.
	C Counters
}

type srcKey struct {
	topic     string
	partition int
}

// New builds an engine for views (already validated by featurespec).
func New(views []*featurespec.View) (*Engine, error) {
	if len(views) == 0 {
		return nil, errors.New("featurizer core: no feature views")
	}
	e := &Engine{
		byName:   map[string]*viewPlan{},
		byTopic:  map[string][]*viewPlan{},
		ents:     map[entKey]*entity{},
		dedupe:   cdc.NewDeduper(),
		srcs:     map[srcKey]string{},
		replayTo: map[string]int64{},
	}
	for i, v := range views {
		if _, dup := e.byName[v.Name]; dup {
			return nil, fmt.Errorf("featurizer core: view %q is declared twice", v.Name)
		}
		vp := &viewPlan{idx: int32(i), view: v, latenessMs: time.Duration(v.Source.AllowedLateness).Milliseconds()}
		vp.expiry.byTime = map[int64][]*tileState{}
		groups := map[int64]*resGroup{}
		for _, f := range v.Features {
			res := tiles.ResolutionOf(f)
			g := groups[res.Milliseconds()]
			if g == nil {
				g = &resGroup{resMs: res.Milliseconds(), retentionMs: tiles.Retention(v, res).Milliseconds()}
				groups[g.resMs] = g
				vp.groups = append(vp.groups, g)
			}
			g.feats = append(g.feats, featPlan{name: f.Name, column: f.Column, agg: f.Aggregation})
		}
		e.views = append(e.views, vp)
		e.byName[v.Name] = vp
		e.byTopic[v.Source.Topic] = append(e.byTopic[v.Source.Topic], vp)
	}
	return e, nil
}

// Topics lists the source topics of every view.
func (e *Engine) Topics() []string {
	out := make([]string, 0, len(e.byTopic))
	for _, vp := range e.views {
		t := vp.view.Source.Topic
		found := false
		for _, o := range out {
			if o == t {
				found = true
				break
			}
		}
		if !found {
			out = append(out, t)
		}
	}
	return out
}

func (e *Engine) src(topic string, partition int) string {
	k := srcKey{topic, partition}
	s, ok := e.srcs[k]
	if !ok {
		s = topic + "/" + strconv.Itoa(partition)
		e.srcs[k] = s
	}
	return s
}

// Apply applies one source record. A record that cannot be decoded is
// counted and skipped; the returned error says why, for logging.
func (e *Engine) Apply(r Record) error {
	views := e.byTopic[r.Topic]
	if len(views) == 0 {
		return nil
	}
	e.C.Records.Add(1)
	e.seq++
	src := e.src(r.Topic, r.Partition)
	var (
		row     map[string]any
		env     *cdc.Envelope
		rowErr  error
		envErr  error
		decoded [2]bool
		errs    []error
	)
	for _, vp := range views {
		var changes []change
		switch vp.view.Source.Format {
		case featurespec.FormatDebezium:
			if !decoded[1] {
				decoded[1] = true
				env, envErr = decodeDebezium(r.Value)
				if envErr == nil && env.Source.Sequence != "" && env.Op != cdc.OpRead {
					pos, err := cdc.ParseSequence(env.Source.Sequence)
					if err != nil {
						envErr = err
					} else if !e.dedupe.Fresh(r.Topic, r.Partition, env.Op, pos) {
						e.C.Duplicates.Add(1)
						return nil
					}
				}
			}
			if envErr != nil {
				errs = append(errs, fmt.Errorf("view %s: %w", vp.view.Name, envErr))
				continue
			}
			changes = changesFor(env, vp.view.Source.Ops)
		default:
			if !decoded[0] {
				decoded[0] = true
				rowErr = decodeJSON(r.Value, &row)
				if rowErr == nil && row == nil {
					rowErr = errors.New("value is not a JSON object")
				}
			}
			if rowErr != nil {
				errs = append(errs, fmt.Errorf("view %s: json record: %w", vp.view.Name, rowErr))
				continue
			}
			changes = []change{{row: row, add: true}}
		}
		update := env != nil && env.Op == cdc.OpUpdate
		for _, c := range changes {
			if err := e.applyChange(vp, c, update, r, src); err != nil {
				errs = append(errs, fmt.Errorf("view %s: %w", vp.view.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		e.C.Invalid.Add(1)
		return errors.Join(errs...)
	}
	return nil
}

func (e *Engine) applyChange(vp *viewPlan, c change, update bool, r Record, src string) error {
	if conds := vp.view.Source.Conditions; len(conds) > 0 && !featurespec.Match(conds, c.row) {
		return nil
	}
	ent, err := entityOf(c.row, vp.view)
	if err != nil {
		return err
	}
	ts := r.TimeMs
	if f := vp.view.Source.EventTime; f != "" {
		if ts, err = eventTime(c.row, f); err != nil {
			return err
		}
	}
	key := entKey{vp.idx, ent}
	en := e.ents[key]
	// A replayed record is judged against a watermark restored from tiles
	// that may already hold records after it (a flush cut short by a
	// crash): it was on time when first handled, as far as we can tell, so
	// it is not judged late again. Tiles that already hold it skip it by
	// offset. (A record that was really late and falls in the replay range
	// is applied where the first run dropped it: the one inexactness.)
	replay := false
	if last, ok := e.replayTo[src]; ok && r.Offset <= last {
		replay = true
	}
	late := !replay && en != nil && ts < en.wm-vp.latenessMs
	if c.add && late && !update {
		e.C.Late.Add(1)
		return nil
	}
	if !c.add && en == nil {
		return nil
	}
	applied := false
	for _, g := range vp.groups {
		s := slot{g.resMs, tiles.StartOf(ts, time.Duration(g.resMs)*time.Millisecond)}
		var st *tileState
		if en != nil {
			st = en.tiles[s]
		}
		if st == nil {
			// Retractions and late corrections only touch tiles still
			// held; an accepted insert never creates an already expired
			// tile.
			if !c.add || late || (g.retentionMs > 0 && vp.hasClock && s.startMs+g.retentionMs+vp.latenessMs <= vp.clock) {
				continue
			}
			if en == nil {
				en = &entity{wm: ts, tiles: map[slot]*tileState{}}
				e.ents[key] = en
			}
			st = e.newTile(vp, g, key, s)
			en.tiles[s] = st
		}
		if st.seq != e.seq {
			if last, ok := st.t.Offsets[src]; ok && r.Offset <= last {
				e.C.Duplicates.Add(1)
				continue
			}
			st.seq = e.seq
			st.t.Offsets[src] = r.Offset
		}
		t := st.t
		for _, f := range g.feats {
			ir := t.Features[f.name]
			var v any
			if f.column != "" {
				v = c.row[f.column]
			}
			if c.add {
				ir.Observe(f.agg, v, ts)
			} else {
				ir.Unobserve(f.agg, v)
			}
		}
		if c.add && ts > t.MaxEventMs {
			t.MaxEventMs = ts
		}
		if !st.dirty {
			st.dirty = true
			e.dirty = append(e.dirty, st)
		}
		applied = true
	}
	if applied {
		e.C.Applied.Add(1)
	}
	if c.add && en != nil && !late {
		if ts > en.wm {
			en.wm = ts
		}
		if !vp.hasClock || ts > vp.clock {
			vp.clock, vp.hasClock = ts, true
		}
	}
	return nil
}

func (e *Engine) newTile(vp *viewPlan, g *resGroup, key entKey, s slot) *tileState {
	t := &tiles.Tile{
		View:         vp.view.Name,
		Entity:       key.entity,
		ResolutionMs: s.resMs,
		StartMs:      s.startMs,
		Features:     make(map[string]*tiles.IR, len(g.feats)),
		Offsets:      make(map[string]int64, 1),
	}
	for _, f := range g.feats {
		t.Features[f.name] = &tiles.IR{}
	}
	return e.track(vp, g, key, t)
}

func (e *Engine) track(vp *viewPlan, g *resGroup, key entKey, t *tiles.Tile) *tileState {
	st := &tileState{t: t, ent: key, group: g}
	if g.retentionMs > 0 {
		st.expireAt = t.StartMs + g.retentionMs + vp.latenessMs
		vp.expiry.add(st)
	}
	e.C.Tiles.Add(1)
	return st
}

// Flush expires tiles the view clocks have passed and returns every tile
// changed since the last Flush (full state) and a tombstone for every
// expired one. The caller writes them to features.tiles before committing
// the source offsets.
func (e *Engine) Flush() ([]Output, error) {
	for _, vp := range e.views {
		e.expire(vp)
	}
	out := make([]Output, 0, len(e.dirty)+len(e.tombs))
	for _, st := range e.dirty {
		st.dirty = false
		if st.dead {
			continue
		}
		b, err := st.t.Encode()
		if err != nil {
			return nil, fmt.Errorf("encode tile %s: %w", st.t.Key(), err)
		}
		out = append(out, Output{Key: st.t.Key(), Value: b, Tile: st.t})
	}
	for _, k := range e.tombs {
		out = append(out, Output{Key: k})
	}
	e.C.Emitted.Add(int64(len(out) - len(e.tombs)))
	e.C.Expired.Add(int64(len(e.tombs)))
	clear(e.dirty)
	e.dirty = e.dirty[:0]
	e.tombs = e.tombs[:0]
	return out, nil
}

func (e *Engine) expire(vp *viewPlan) {
	if !vp.hasClock {
		return
	}
	for _, st := range vp.expiry.popUntil(vp.clock) {
		if st.dead {
			continue
		}
		e.remove(st)
		e.tombs = append(e.tombs, st.t.Key())
	}
}

func (e *Engine) remove(st *tileState) {
	st.dead = true
	en := e.ents[st.ent]
	if en == nil {
		return
	}
	s := slot{st.t.ResolutionMs, st.t.StartMs}
	if en.tiles[s] == st {
		delete(en.tiles, s)
		e.C.Tiles.Add(-1)
	}
	if len(en.tiles) == 0 {
		delete(e.ents, st.ent)
	}
}

// Restore loads a tile read back from features.tiles. Later calls for the
// same key replace earlier ones, as compaction would. Tiles of views or
// resolutions this engine does not know are ignored (the spec changed);
// features missing from a restored tile start empty.
func (e *Engine) Restore(t *tiles.Tile) {
	vp := e.byName[t.View]
	if vp == nil {
		return
	}
	var g *resGroup
	for _, cand := range vp.groups {
		if cand.resMs == t.ResolutionMs {
			g = cand
		}
	}
	if g == nil {
		return
	}
	feats := make(map[string]*tiles.IR, len(g.feats))
	for _, f := range g.feats {
		if ir := t.Features[f.name]; ir != nil {
			feats[f.name] = ir
		} else {
			feats[f.name] = &tiles.IR{}
		}
	}
	t.Features = feats
	if t.Offsets == nil {
		t.Offsets = map[string]int64{}
	}
	for src, off := range t.Offsets {
		if last, ok := e.replayTo[src]; !ok || off > last {
			e.replayTo[src] = off
		}
	}
	key := entKey{vp.idx, t.Entity}
	en := e.ents[key]
	if en == nil {
		en = &entity{wm: t.MaxEventMs, tiles: map[slot]*tileState{}}
		e.ents[key] = en
	}
	s := slot{t.ResolutionMs, t.StartMs}
	if old := en.tiles[s]; old != nil {
		old.dead = true
		e.C.Tiles.Add(-1)
	}
	en.tiles[s] = e.track(vp, g, key, t)
	if t.MaxEventMs > en.wm {
		en.wm = t.MaxEventMs
	}
	if !vp.hasClock || t.MaxEventMs > vp.clock {
		vp.clock, vp.hasClock = t.MaxEventMs, true
	}
}

// RestoreTombstone drops the tile a tombstone on features.tiles deleted.
func (e *Engine) RestoreTombstone(key string) {
	view, entityID, resMs, startMs, ok := ParseKey(key)
	if !ok {
		return
	}
	vp := e.byName[view]
	if vp == nil {
		return
	}
	en := e.ents[entKey{vp.idx, entityID}]
	if en == nil {
		return
	}
	if st := en.tiles[slot{resMs, startMs}]; st != nil {
		e.remove(st)
	}
}

// ParseKey splits a tile key (view|entity|res_ms|start_ms); the entity may
// itself contain '|'.
func ParseKey(key string) (view, entity string, resMs, startMs int64, ok bool) {
	i := strings.IndexByte(key, '|')
	j := strings.LastIndexByte(key, '|')
	if i < 0 || j <= i {
		return "", "", 0, 0, false
	}
	k := strings.LastIndexByte(key[:j], '|')
	if k <= i {
		return "", "", 0, 0, false
	}
	r, err1 := strconv.ParseInt(key[k+1:j], 10, 64)
	s, err2 := strconv.ParseInt(key[j+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return "", "", 0, 0, false
	}
	return key[:i], key[i+1 : k], r, s, true
}

// Snapshot returns copies of every live tile, keyed by tile key (for tests
// and offline use).
func (e *Engine) Snapshot() map[string]*tiles.Tile {
	out := map[string]*tiles.Tile{}
	for _, en := range e.ents {
		for _, st := range en.tiles {
			b, err := st.t.Encode()
			if err != nil {
				continue
			}
			t, err := tiles.Decode(b)
			if err != nil {
				continue
			}
			out[t.Key()] = t
		}
	}
	return out
}

// EntityTiles returns the live tiles of one entity of a view. They are the
// engine's own: read them only until the next Apply or Flush.
func (e *Engine) EntityTiles(view, entity string) []*tiles.Tile {
	vp := e.byName[view]
	if vp == nil {
		return nil
	}
	en := e.ents[entKey{vp.idx, entity}]
	if en == nil {
		return nil
	}
	out := make([]*tiles.Tile, 0, len(en.tiles))
	for _, st := range en.tiles {
		out = append(out, st.t)
	}
	return out
}

// Entities is the number of entities held across views.
func (e *Engine) Entities() int { return len(e.ents) }

// expiryQueue orders tiles by expiry time: a heap of distinct times, each
// with its tiles (tiles share expiry times because starts are aligned).
type expiryQueue struct {
	times  int64Heap
	byTime map[int64][]*tileState
}

func (q *expiryQueue) add(st *tileState) {
	l, ok := q.byTime[st.expireAt]
	if !ok {
		heap.Push(&q.times, st.expireAt)
	}
	q.byTime[st.expireAt] = append(l, st)
}

// popUntil removes and returns the tiles expiring at or before clock.
func (q *expiryQueue) popUntil(clock int64) []*tileState {
	var out []*tileState
	for len(q.times) > 0 && q.times[0] <= clock {
		t := heap.Pop(&q.times).(int64)
		out = append(out, q.byTime[t]...)
		delete(q.byTime, t)
	}
	return out
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
