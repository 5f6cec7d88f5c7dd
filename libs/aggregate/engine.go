// Package aggregate turns source records into tiles: the featurizer's
// application core, shared with the offline service (training sets and
// backfill compute with the same code). It runs in two stages that do no
// I/O; the Kafka adapters feed them and write out what they produce.
//
// The Router (first stage) decodes source records, applies each view's
// filter and turns every row change into a routed record keyed by
// view|entity, for the internal topic featurizer.repartition. Sources keyed
// by something else than the view's entity (CDC tables are keyed by their
// primary key) are thereby re-keyed, so all changes of one entity land on
// one repartition partition and are aggregated by one instance.
//
// The Engine (second stage) turns routed records into per-entity tiles of
// intermediate aggregates and decides which tiles to emit and which to
// expire. All its state is kept per repartition partition (a shard), so
// what a partition produces does not depend on which other partitions the
// process holds: a partition restored on another instance after a
// rebalance, or on the same one after a restart, continues exactly.
//
// Time. Each entity of a view has a watermark, the newest event time applied
// to it. An insert older than the watermark minus the view's allowed
// lateness is counted and dropped; one within it updates its own tile. The
// view's clock (per partition) is the newest event time applied to any of
// its entities there; a tile expires (and a tombstone is emitted) once
// start + retention + lateness <= clock, where retention is the longest
// window kept at the tile's resolution plus one resolution: by then no read
// at or after the clock can include it. Latest values never expire.
//
// Exactly-once effect. A tile records, per source partition, the offset of
// the last source record applied to it (tiles.Tile.Offsets); routed
// records carry their source position. Records replayed after a restart of
// either stage (routed or emitted before the crash but not yet committed)
// are skipped per tile, so state restored from features.tiles plus the
// replay equals the state of a featurizer that never stopped. This relies
// on each source partition's records reaching a repartition partition in
// source order and without gaps: the router writes a flush's records of
// one partition one batch at a time and stops at the first failed batch,
// so a failed flush leaves a prefix, never a lost batch followed by a
// later one whose offsets would make the replay of the lost one look
// applied (kafkaio.RouteHandler).
package aggregate

import (
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
	// Tombstones counts source records without a value (the tombstone
	// ingest writes after a delete so compaction can drop the key):
	// expected traffic, skipped.
	Tombstones atomic.Int64
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
	Key   []byte
	Value []byte
}

type featPlan struct {
	name string
	// ir indexes the group's IRs.
	ir int
}

// irPlan is one intermediate representation a tile keeps. Features of one
// column whose aggregations need the same state (count, sum, avg, min,
// max, stddev, first, last and latest all need IR.Add; the sketches add a
// distinct counter or a quantile sketch) share it: each such feature's IR
// would be identical, so it is updated once and encoded once.
type irPlan struct {
	// col indexes the view's columns (routed image columns); -1 for none.
	col int
	// agg is the aggregation passed to Observe (it picks the sketch).
	agg string
}

// sketchOf is the aggregation standing for agg's kind of state.
func sketchOf(agg string) string {
	switch {
	case agg == featurespec.AggApproxDistinct:
		return featurespec.AggApproxDistinct
	case featurespec.IsQuantile(agg):
		return featurespec.AggP50
	}
	return featurespec.AggSum
}

// resGroup holds a view's features kept at one resolution.
type resGroup struct {
	resMs int64
	// retentionMs is how long after its start a tile stays readable; 0
	// keeps it forever.
	retentionMs int64
	feats       []featPlan
	irs         []irPlan
	// scratch is reused to assemble a tile for encoding.
	scratch tiles.Tile
}

type viewPlan struct {
	idx        int
	view       *featurespec.View
	groups     []*resGroup
	latenessMs int64
	layout     uint32
}

// shard is the state of one repartition partition. Everything that
// decides which tiles exist and what they hold (entity watermarks, each
// view's clock and expiry queue, the replay range after a restore) is kept
// per partition, so the tiles a partition produces do not depend on which
// other partitions the same process holds: a partition moved to another
// instance (rebalance) or restored after a restart continues exactly.
type shard struct {
	part int32
	// ents is, per view, the entities by id.
	ents   []map[string]*entity
	clocks []viewClock
	// replayTo is, per source partition, the highest source offset any
	// restored tile of this shard holds. Records up to it are replays of
	// records handled before a restart; see apply.
	replayTo map[string]int64
}

type viewClock struct {
	clock    int64
	hasClock bool
	expiry   expiryQueue
}

type entity struct {
	id string
	wm int64
	// tiles are the entity's live tiles, mostly in creation order (recent
	// tiles last, where lookups start).
	tiles []*tileState
	// hot is the tile last found or made per resolution (hotSlot): an
	// event usually lands in the current tile of each resolution, and the
	// latest-values tile, made first, would otherwise be found last.
	hot [4]*tileState
	// top is, per slot, at least the latest start of a live tile (it only
	// grows): an event past it makes a new tile without a search.
	top [4]int64
}

// hotSlot is the entity.hot slot of a resolution (tiles.ResolutionFor's).
func hotSlot(resMs int64) int {
	switch resMs {
	case 0:
		return 0
	case 5 * 60_000:
		return 1
	case 3_600_000:
		return 2
	default:
		return 3
	}
}

func (en *entity) find(resMs, startMs int64) *tileState {
	slot := hotSlot(resMs)
	if st := en.hot[slot]; st != nil && st.startMs == startMs && st.group.resMs == resMs {
		return st
	}
	if startMs > en.top[slot] && startMs > 0 {
		return nil
	}
	for i := len(en.tiles) - 1; i >= 0; i-- {
		if st := en.tiles[i]; st.startMs == startMs && st.group.resMs == resMs {
			en.hot[slot] = st
			return st
		}
	}
	return nil
}

// add appends a new live tile.
func (en *entity) add(st *tileState) {
	en.tiles = append(en.tiles, st)
	slot := hotSlot(st.group.resMs)
	en.hot[slot] = st
	en.top[slot] = max(en.top[slot], st.startMs)
}

func (en *entity) drop(st *tileState) bool {
	if slot := hotSlot(st.group.resMs); en.hot[slot] == st {
		en.hot[slot] = nil
	}
	for i, o := range en.tiles {
		if o == st {
			en.tiles = append(en.tiles[:i], en.tiles[i+1:]...)
			return true
		}
	}
	return false
}

// tileState is one held tile, kept compact (no maps): its IRs, one per
// distinct state of the group (features sharing an IR share it), and the
// source offsets it holds. A tiles.Tile is assembled only to encode it.
type tileState struct {
	en         *entity
	vp         *viewPlan
	sh         *shard
	group      *resGroup
	irs        []tiles.IR
	offs       []srcOffset
	startMs    int64
	maxEventMs int64
	expireAt   int64
	seq        uint64
	dirty      bool
	dead       bool
}

// srcOffset is the offset of the last record of a source partition
// ("topic/partition", interned) applied to a tile.
type srcOffset struct {
	src string
	off int64
}

func (st *tileState) offset(src string) (int64, bool) {
	for _, o := range st.offs {
		if o.src == src {
			return o.off, true
		}
	}
	return 0, false
}

func (st *tileState) setOffset(src string, off int64) {
	for i := range st.offs {
		if st.offs[i].src == src {
			st.offs[i].off = off
			return
		}
	}
	st.offs = append(st.offs, srcOffset{src, off})
}

func (st *tileState) key() string {
	return tiles.Key(st.vp.view.Name, st.en.id, st.group.resMs, st.startMs)
}

// tile assembles the tile's tiles.Tile into t (reusing its maps); its
// features point at the state.
func (st *tileState) tile(t *tiles.Tile) *tiles.Tile {
	t.View, t.Entity = st.vp.view.Name, st.en.id
	t.ResolutionMs, t.StartMs, t.MaxEventMs = st.group.resMs, st.startMs, st.maxEventMs
	if t.Features == nil {
		t.Features = make(map[string]*tiles.IR, len(st.group.feats))
	}
	for _, f := range st.group.feats {
		t.Features[f.name] = &st.irs[f.ir]
	}
	if t.Offsets == nil {
		t.Offsets = make(map[string]int64, len(st.offs))
	}
	clear(t.Offsets)
	for _, o := range st.offs {
		t.Offsets[o.src] = o.off
	}
	return t
}

// Engine is the aggregation stage: it holds the tile state of the
// repartition partitions assigned to it and applies routed records. It is
// not safe for concurrent use: the consumer calls it from one goroutine.
type Engine struct {
	views  []*viewPlan
	byName map[string]*viewPlan
	router *Router
	// parts is the partition count Apply routes source records over (tests
	// and offline use; the service routes through Kafka).
	parts  int
	shards map[int32]*shard
	dirty  []*tileState
	tombs  []string
	seq    uint64
	srcs   map[string]map[int64]string
	rt     routed
	vals   []tiles.Value
	// spare holds the chunks and outputs slice given back with Recycle.
	spare struct {
		chunks [][]byte
		outs   []Output
	}
	// last is the last Flush's chunks and outputs, for Recycle.
	last struct {
		chunks [][]byte
		outs   []Output
	}

	// C are the engine's counters.
	C Counters
}

// Option configures an Engine.
type Option func(*Engine)

// WithPartitions makes Apply spread entities over n partitions, as the
// repartition topic would.
func WithPartitions(n int) Option { return func(e *Engine) { e.parts = max(1, n) } }

// New builds an engine for views (already validated by featurespec).
func New(views []*featurespec.View, opts ...Option) (*Engine, error) {
	if len(views) == 0 {
		return nil, errors.New("featurizer core: no feature views")
	}
	e := &Engine{
		byName: map[string]*viewPlan{},
		parts:  1,
		shards: map[int32]*shard{},
		srcs:   map[string]map[int64]string{},
	}
	for _, o := range opts {
		o(e)
	}
	var err error
	if e.router, err = NewRouter(views, &e.C); err != nil {
		return nil, err
	}
	for i, v := range views {
		cols := viewColumns(v)
		vp := &viewPlan{idx: i, view: v, latenessMs: time.Duration(v.Source.AllowedLateness).Milliseconds(), layout: layoutOf(cols)}
		groups := map[int64]*resGroup{}
		for _, f := range v.Features {
			res := tiles.ResolutionOf(f)
			g := groups[res.Milliseconds()]
			if g == nil {
				g = &resGroup{resMs: res.Milliseconds(), retentionMs: tiles.Retention(v, res).Milliseconds()}
				groups[g.resMs] = g
				vp.groups = append(vp.groups, g)
			}
			col := -1
			if f.Column != "" {
				col = slices.Index(cols, f.Column)
			}
			ip := irPlan{col: col, agg: sketchOf(f.Aggregation)}
			k := slices.Index(g.irs, ip)
			if k < 0 {
				k = len(g.irs)
				g.irs = append(g.irs, ip)
			}
			g.feats = append(g.feats, featPlan{name: f.Name, ir: k})
		}
		e.views = append(e.views, vp)
		e.byName[v.Name] = vp
	}
	return e, nil
}

// Router is the engine's router for Apply; the service uses its own.
func (e *Engine) Router() *Router { return e.router }

// Topics lists the source topics of every view.
func (e *Engine) Topics() []string {
	var out []string
	for _, vp := range e.views {
		if t := vp.view.Source.Topic; !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// intern returns the engine's copy of a "topic/partition" source name.
func (e *Engine) intern(src string) string {
	i := strings.LastIndexByte(src, '/')
	if i < 0 {
		return src
	}
	p, err := strconv.ParseInt(src[i+1:], 10, 64)
	if err != nil || strconv.FormatInt(p, 10) != src[i+1:] {
		return src
	}
	return e.src([]byte(src[:i]), p)
}

func (e *Engine) src(topic []byte, partition int64) string {
	m, ok := e.srcs[string(topic)]
	if !ok {
		m = map[int64]string{}
		e.srcs[string(topic)] = m
	}
	s, ok := m[partition]
	if !ok {
		s = string(topic) + "/" + strconv.FormatInt(partition, 10)
		m[partition] = s
	}
	return s
}

func (e *Engine) shard(p int32) *shard {
	sh := e.shards[p]
	if sh == nil {
		sh = &shard{part: p, replayTo: map[string]int64{}}
		for range e.views {
			sh.ents = append(sh.ents, map[string]*entity{})
			sh.clocks = append(sh.clocks, viewClock{expiry: expiryQueue{byTime: map[int64][]*tileState{}}})
		}
		e.shards[p] = sh
	}
	return sh
}

// Apply routes one source record and applies its changes, placing each
// entity on its partition among the engine's partitions (WithPartitions):
// both stages in one call, as tests and offline computation use them. A
// record that cannot be decoded is counted and skipped; the returned error
// says why, for logging.
func (e *Engine) Apply(r Record) error {
	var errs []error
	err := e.router.Route(r, func(key, value []byte) error {
		if err := e.applyRouted(int32(PartitionOfKey(key, e.parts)), value); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	return errors.Join(err, errors.Join(errs...))
}

// ApplyRouted applies one record read from partition of RepartitionTopic,
// a batch of routed changes or a single one, and returns how many changes
// it held. A change that cannot be decoded is counted as invalid and
// skipped (the rest of its batch is applied; malformed batch framing
// invalidates the rest of the batch); the returned error says why.
func (e *Engine) ApplyRouted(partition int32, value []byte) (int, error) {
	if len(value) == 0 || value[0] != routedBatchVersion {
		return 1, e.applyRouted(partition, value)
	}
	n := 0
	var errs []error
	err := batchEntries(value, func(b []byte) error {
		n++
		if err := e.applyRouted(partition, b); err != nil && len(errs) < 10 {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		e.C.Invalid.Add(1)
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

func (e *Engine) applyRouted(partition int32, value []byte) error {
	rt := &e.rt
	if err := decodeRouted(value, rt); err != nil {
		e.C.Invalid.Add(1)
		return err
	}
	vp := e.byName[string(rt.view)]
	if vp == nil {
		e.C.Invalid.Add(1)
		return fmt.Errorf("routed record for unknown view %q", rt.view)
	}
	if rt.layout != vp.layout {
		e.C.Invalid.Add(1)
		return fmt.Errorf("view %s: routed record has another column layout (spec changed between router and aggregator)", vp.view.Name)
	}
	e.seq++
	sh := e.shard(partition)
	src := e.src(rt.srcTopic, rt.srcPart)
	applied := false
	if rt.hasRetract {
		applied = e.apply(sh, vp, &rt.retract, false, rt, src) || applied
	}
	if rt.hasAdd {
		applied = e.apply(sh, vp, &rt.add, true, rt, src) || applied
	}
	if applied {
		e.C.Applied.Add(1)
	}
	return nil
}

func (e *Engine) apply(sh *shard, vp *viewPlan, im *image, add bool, rt *routed, src string) bool {
	ts := im.ts
	ents := sh.ents[vp.idx]
	vc := &sh.clocks[vp.idx]
	en := ents[string(rt.entity)]
	// A replayed record is judged against a watermark restored from tiles
	// that may already hold records after it (a flush cut short by a
	// crash): it was on time when first handled, as far as we can tell, so
	// it is not judged late again. Tiles that already hold it skip it by
	// offset. (A record that was really late and falls in the replay range
	// is applied where the first run dropped it: the one inexactness.)
	replay := false
	if last, ok := sh.replayTo[src]; ok && rt.srcOffset <= last {
		replay = true
	}
	late := !replay && en != nil && ts < en.wm-vp.latenessMs
	if add && late && !rt.update {
		e.C.Late.Add(1)
		return false
	}
	if !add && en == nil {
		return false
	}
	// The source position breaks ties of event time for first, last and
	// latest (tiles.Pos): the CDC stream position, else the offset.
	pos := tiles.Pos{0, uint64(rt.srcOffset)}
	if rt.hasPos {
		pos = tiles.Pos{rt.pos.CommitLSN, rt.pos.LSN}
	}
	vals := e.vals[:0]
	for _, c := range im.cols {
		vals = append(vals, tiles.ValueOf(anyOf(c)))
	}
	e.vals = vals
	applied := false
	for _, g := range vp.groups {
		start := tiles.StartOf(ts, time.Duration(g.resMs)*time.Millisecond)
		var st *tileState
		if en != nil {
			st = en.find(g.resMs, start)
		}
		if st == nil {
			// Retractions and late corrections only touch tiles still
			// held; an accepted insert never creates an already expired
			// tile.
			if !add || late || (g.retentionMs > 0 && vc.hasClock && start+g.retentionMs+vp.latenessMs <= vc.clock) {
				continue
			}
			if en == nil {
				en = &entity{id: string(rt.entity), wm: ts}
				ents[en.id] = en
			}
			st = e.newTile(sh, vp, g, en, start)
			en.add(st)
		}
		if st.seq != e.seq {
			if last, ok := st.offset(src); ok && rt.srcOffset <= last {
				e.C.Duplicates.Add(1)
				continue
			}
			st.seq = e.seq
			st.setOffset(src, rt.srcOffset)
		}
		for k, ip := range g.irs {
			ir := &st.irs[k]
			var v tiles.Value
			if ip.col >= 0 && ip.col < len(vals) {
				v = vals[ip.col]
			}
			if add {
				ir.ObserveValueAt(ip.agg, v, ts, pos)
			} else {
				ir.UnobserveValue(ip.agg, v)
			}
		}
		if add && ts > st.maxEventMs {
			st.maxEventMs = ts
		}
		if !st.dirty {
			st.dirty = true
			e.dirty = append(e.dirty, st)
		}
		applied = true
	}
	if add && en != nil && !late {
		if ts > en.wm {
			en.wm = ts
		}
		if !vc.hasClock || ts > vc.clock {
			vc.clock, vc.hasClock = ts, true
		}
	}
	return applied
}

func (e *Engine) newTile(sh *shard, vp *viewPlan, g *resGroup, en *entity, start int64) *tileState {
	st := &tileState{en: en, vp: vp, sh: sh, group: g, startMs: start, irs: make([]tiles.IR, len(g.irs))}
	return e.track(st)
}

func (e *Engine) track(st *tileState) *tileState {
	g, vp, sh := st.group, st.vp, st.sh
	if g.retentionMs > 0 {
		st.expireAt = st.startMs + g.retentionMs + vp.latenessMs
		sh.clocks[vp.idx].expiry.add(st)
	}
	e.C.Tiles.Add(1)
	return st
}

// Flush expires tiles the view clocks have passed and returns every tile
// changed since the last Flush (full state) and a tombstone for every
// expired one. The caller writes them to features.tiles before committing
// the source offsets.
func (e *Engine) Flush() ([]Output, error) {
	for _, sh := range e.shards {
		for i := range sh.clocks {
			e.expire(sh, i)
		}
	}
	// The flush's tiles are written into chunks of flushChunk bytes: the
	// outputs are slices of them, handed over to the caller, so the next
	// flush takes new chunks unless the caller gave the last ones back
	// (Recycle): writing tens of megabytes to fresh memory every flush
	// costs page faults and garbage collections, and one growing buffer
	// would copy itself as it grows.
	out := e.spare.outs[:0]
	if cap(out) < len(e.dirty)+len(e.tombs) {
		out = make([]Output, 0, len(e.dirty)+len(e.tombs))
	}
	spare := e.spare.chunks
	e.spare.chunks, e.spare.outs = nil, nil
	e.last.chunks, e.last.outs = nil, nil
	var chunks [][]byte
	var buf []byte
	for _, st := range e.dirty {
		st.dirty = false
		if st.dead {
			continue
		}
		if cap(buf)-len(buf) < flushChunk/16 {
			if len(spare) > 0 {
				buf, spare = spare[len(spare)-1][:0], spare[:len(spare)-1]
			} else {
				buf = make([]byte, 0, flushChunk)
			}
			chunks = append(chunks, nil)
		}
		from := len(buf)
		buf = tiles.AppendKey(buf, st.vp.view.Name, st.en.id, st.group.resMs, st.startMs)
		key := buf[from:len(buf):len(buf)]
		var err error
		if buf, err = st.tile(&st.group.scratch).AppendJSON(buf); err != nil {
			return nil, fmt.Errorf("encode tile %s: %w", st.key(), err)
		}
		chunks[len(chunks)-1] = buf // moved if a huge tile outgrew it
		out = append(out, Output{Key: key, Value: buf[from+len(key) : len(buf) : len(buf)]})
	}
	for _, k := range e.tombs {
		out = append(out, Output{Key: []byte(k)})
	}
	e.last.chunks, e.last.outs = chunks, out
	e.C.Emitted.Add(int64(len(out) - len(e.tombs)))
	e.C.Expired.Add(int64(len(e.tombs)))
	clear(e.dirty)
	e.dirty = e.dirty[:0]
	e.tombs = e.tombs[:0]
	return out, nil
}

// flushChunk is the size of the chunks Flush writes tiles into.
const flushChunk = 1 << 20

// maxSpare bounds the chunks Recycle keeps for the next Flush (16 MiB: a
// steady stream's flushes every few tens of milliseconds fit; a larger
// one, after a restore or a lag, takes new chunks).
const maxSpare = 16

// maxSpareOuts bounds the outputs slice Recycle keeps (3 MiB).
const maxSpareOuts = 64 << 10

// Recycle says the outputs of the last Flush are done with (written and
// acknowledged: nothing refers to their bytes any more), so the next Flush
// reuses their memory. Do not call it when unsure (a write abandoned after
// a timeout may still be sending them).
func (e *Engine) Recycle() {
	if e.last.outs != nil {
		if cap(e.last.outs) <= maxSpareOuts {
			clear(e.last.outs)
			e.spare.outs = e.last.outs[:0]
		}
		for _, c := range e.last.chunks {
			if len(e.spare.chunks) < maxSpare && cap(c) == flushChunk {
				e.spare.chunks = append(e.spare.chunks, c)
			}
		}
	}
	e.last.chunks, e.last.outs = nil, nil
}

func (e *Engine) expire(sh *shard, view int) {
	vc := &sh.clocks[view]
	if !vc.hasClock {
		return
	}
	for _, st := range vc.expiry.popUntil(vc.clock) {
		if st.dead {
			continue
		}
		e.remove(st)
		e.tombs = append(e.tombs, st.key())
	}
}

func (e *Engine) remove(st *tileState) {
	st.dead = true
	ents := st.sh.ents[st.vp.idx]
	en := st.en
	if ents[en.id] != en {
		return
	}
	if en.drop(st) {
		e.C.Tiles.Add(-1)
	}
	if len(en.tiles) == 0 {
		delete(ents, en.id)
	}
}

// Partitions lists the repartition partitions the engine holds state of.
func (e *Engine) Partitions() []int32 {
	return slices.Sorted(maps.Keys(e.shards))
}

// Open makes sure partition p is held (empty if nothing was restored
// into it), so Flush expires its tiles as they age.
func (e *Engine) Open(p int32) { e.shard(p) }

// Drop forgets the state of partition p (another instance owns it now).
// Call it after a Flush: tiles changed since are not emitted.
func (e *Engine) Drop(p int32) {
	sh := e.shards[p]
	if sh == nil {
		return
	}
	for _, ents := range sh.ents {
		for _, en := range ents {
			for _, st := range en.tiles {
				st.dead = true
				e.C.Tiles.Add(-1)
			}
		}
	}
	delete(e.shards, p)
}

// Restore loads a tile read back from features.tiles into partition p.
// Later calls for the same key replace earlier ones, as compaction would.
// Tiles of views or resolutions this engine does not know are ignored (the
// spec changed); features missing from a restored tile start empty.
func (e *Engine) Restore(p int32, t *tiles.Tile) {
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
	sh := e.shard(p)
	// Features sharing an IR were emitted with equal states: take the
	// first one present.
	st := &tileState{vp: vp, sh: sh, group: g, startMs: t.StartMs, maxEventMs: t.MaxEventMs, irs: make([]tiles.IR, len(g.irs))}
	have := make([]bool, len(g.irs))
	for _, f := range g.feats {
		if ir := t.Features[f.name]; ir != nil && !have[f.ir] {
			st.irs[f.ir], have[f.ir] = *ir, true
		}
	}
	for src, off := range t.Offsets {
		st.offs = append(st.offs, srcOffset{e.intern(src), off})
		if last, ok := sh.replayTo[src]; !ok || off > last {
			sh.replayTo[src] = off
		}
	}
	ents := sh.ents[vp.idx]
	en := ents[t.Entity]
	if en == nil {
		en = &entity{id: t.Entity, wm: t.MaxEventMs}
		ents[en.id] = en
	}
	st.en = en
	if old := en.find(t.ResolutionMs, t.StartMs); old != nil {
		old.dead = true
		en.drop(old)
		e.C.Tiles.Add(-1)
	}
	en.add(e.track(st))
	if t.MaxEventMs > en.wm {
		en.wm = t.MaxEventMs
	}
	vc := &sh.clocks[vp.idx]
	if !vc.hasClock || t.MaxEventMs > vc.clock {
		vc.clock, vc.hasClock = t.MaxEventMs, true
	}
}

// RestoreTombstone drops the tile a tombstone on features.tiles deleted.
func (e *Engine) RestoreTombstone(p int32, key string) {
	view, entityID, resMs, startMs, ok := ParseKey(key)
	if !ok {
		return
	}
	vp := e.byName[view]
	sh := e.shards[p]
	if vp == nil || sh == nil {
		return
	}
	en := sh.ents[vp.idx][entityID]
	if en == nil {
		return
	}
	if st := en.find(resMs, startMs); st != nil {
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

func (e *Engine) eachTile(fn func(st *tileState)) {
	for _, sh := range e.shards {
		for _, ents := range sh.ents {
			for _, en := range ents {
				for _, st := range en.tiles {
					fn(st)
				}
			}
		}
	}
}

// Snapshot returns copies of every live tile, keyed by tile key (for tests
// and offline use).
func (e *Engine) Snapshot() map[string]*tiles.Tile {
	out := map[string]*tiles.Tile{}
	e.eachTile(func(st *tileState) {
		b, err := st.tile(&tiles.Tile{}).Encode()
		if err != nil {
			return
		}
		t, err := tiles.Decode(b)
		if err != nil {
			return
		}
		out[t.Key()] = t
	})
	return out
}

// EntityTiles returns the live tiles of one entity of a view. Their IRs
// are the engine's own: read them only until the next Apply or Flush.
func (e *Engine) EntityTiles(view, entity string) []*tiles.Tile {
	vp := e.byName[view]
	if vp == nil {
		return nil
	}
	var out []*tiles.Tile
	for _, sh := range e.shards {
		if en := sh.ents[vp.idx][entity]; en != nil {
			for _, st := range en.tiles {
				out = append(out, st.tile(&tiles.Tile{}))
			}
		}
	}
	return out
}

// Entities is the number of entities held across views and partitions.
func (e *Engine) Entities() int {
	n := 0
	for _, sh := range e.shards {
		for _, ents := range sh.ents {
			n += len(ents)
		}
	}
	return n
}

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
