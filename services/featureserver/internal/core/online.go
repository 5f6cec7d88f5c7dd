package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/served"
)

// Status tells whether a value was found and is fresh (served.Status).
type Status = served.Status

// Statuses, mirroring tributary.features.v1.FeatureStatus.
const (
	StatusUnspecified = served.StatusUnspecified
	StatusPresent     = served.StatusPresent
	StatusNotFound    = served.StatusNotFound
	StatusStale       = served.StatusStale
)

// Kind is the type of a Value.
type Kind = served.Kind

// Kinds of values.
const (
	KindNone   = served.KindNone
	KindDouble = served.KindDouble
	KindInt64  = served.KindInt64
	KindString = served.KindString
	KindBool   = served.KindBool
)

// Value is one feature of one entity; what it holds is decided by
// package served, shared with offline training sets.
type Value = served.Value

// Rows are the entity rows of a request, each naming one entity by the
// values of its join keys.
type Rows interface {
	// Len is the number of rows.
	Len() int
	// JoinKey returns row i's value of join key key, if it has one.
	JoinKey(i int, key string) (string, bool)
}

// MapRows are rows given as maps from join key to value.
type MapRows []map[string]string

// Len implements Rows.
func (r MapRows) Len() int { return len(r) }

// JoinKey implements Rows.
func (r MapRows) JoinKey(i int, key string) (string, bool) {
	v, ok := r[i][key]
	return v, ok
}

// RequestError is a bad request; Field names the offending part.
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Msg }

// ErrOverloaded is returned when MaxInFlight requests are already running.
var ErrOverloaded = errors.New("feature server overloaded: too many requests in flight, retry with backoff")

// Limits bound what one request may ask and how the server spends itself.
type Limits struct {
	// MaxRows is the most entity rows per request.
	MaxRows int
	// MaxFeatures is the most feature references per request.
	MaxFeatures int
	// MaxValues is the most rows × features per request.
	MaxValues int
	// MaxInFlight is how many requests run at once; more are refused.
	MaxInFlight int
	// FetchParallelism is the most concurrent store reads per request.
	FetchParallelism int
	// FetchChunk is the fewest reads one goroutine does: cheap in-memory
	// reads are not worth a goroutine each, remote ones are.
	FetchChunk int
	// WindowCacheEntries bounds the cache of merged windows (runs of
	// tiles); 0 disables it. Only stores with StableTiles use it.
	WindowCacheEntries int
}

// DefaultLimits suit the embedded store.
func DefaultLimits() Limits {
	return Limits{MaxRows: 1000, MaxFeatures: 500, MaxValues: 100_000, MaxInFlight: 512, FetchParallelism: 8, FetchChunk: 32, WindowCacheEntries: 1 << 16}
}

// Validate names the first bad limit.
func (l Limits) Validate() error {
	for _, c := range []struct {
		name string
		v    int
	}{{"max-rows", l.MaxRows}, {"max-features", l.MaxFeatures}, {"max-values", l.MaxValues}, {"max-in-flight", l.MaxInFlight}, {"fetch-parallelism", l.FetchParallelism}, {"fetch-chunk", l.FetchChunk}} {
		if c.v < 1 {
			return fmt.Errorf("%s: %d, want at least 1", c.name, c.v)
		}
	}
	if l.WindowCacheEntries < 0 {
		return fmt.Errorf("window-cache-entries: %d, want 0 or more", l.WindowCacheEntries)
	}
	return nil
}

// Online answers online feature reads by merging stored tiles at request time.
type Online struct {
	store    TileStore
	catalog  *Catalog
	now      func() time.Time
	limits   Limits
	sem      chan struct{}
	pool     sync.Pool
	cache    *windowCache
	plans    [planCacheSize]atomic.Pointer[refsPlan]
	nextPlan atomic.Uint32
}

// NewOnline builds the read path over store and catalog; now is the clock.
func NewOnline(store TileStore, catalog *Catalog, now func() time.Time, limits Limits) (*Online, error) {
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	o := &Online{store: store, catalog: catalog, now: now, limits: limits, sem: make(chan struct{}, limits.MaxInFlight)}
	o.pool.New = func() any { return new(scratch) }
	if st, ok := store.(StableTiles); ok && st.StableTiles() && limits.WindowCacheEntries > 0 {
		o.cache = newWindowCache(limits.WindowCacheEntries)
	}
	return o, nil
}

// refPlan is one requested feature, resolved.
type refPlan struct {
	view  int // index into scratch.views
	feat  featurespec.Feature
	agg   served.Agg
	resMs int64
	winMs int64
}

// group is the requested features of one view over one window: they read
// the same run of tiles, so the run is found (and its cache entry looked
// up) once per entity for all of them.
type group struct {
	view         int
	resMs, winMs int64
	lo, hi       int // the group's refs are scratch.order[lo:hi]
}

// fetch is the tiles of one (view, entity).
type fetch struct {
	view   string
	entity string
	tiles  []*Tile
	newest int64
}

type scratch struct {
	plan    *refsPlan
	fetches []fetch
	values  []Value
	keys    []string
	// slots holds each concurrent reader's feature lookups, one per group.
	slots [][]slotCache
}

// slotCache remembers where the features of one group are in tiles of one
// FeatureSet: the tiles of a span (and of most entities) share one set,
// so the features are looked up by name once per set, not once per tile.
type slotCache struct {
	set *FeatureSet
	// at[k] is the set's index of the group's k-th feature, -1 if absent.
	at []int
}

// state returns the state of the group's k-th feature (refs idx) in t.
func (c *slotCache) state(t *Tile, refs []refPlan, idx []int, k int) (*tiles.IR, bool) {
	if t.features != c.set {
		c.set = t.features
		c.at = c.at[:0]
		for _, i := range idx {
			j, ok := t.features.index[refs[i].feat.Name]
			if !ok {
				j = -1
			}
			c.at = append(c.at, j)
		}
	}
	j := c.at[k]
	if j < 0 {
		return nil, false
	}
	return &t.irs[t.state[j]], true
}

// slotCaches returns reader w's caches for the plan's groups, emptied.
func (s *scratch) slotCaches(w int) []slotCache {
	for len(s.slots) <= w {
		s.slots = append(s.slots, nil)
	}
	cs := s.slots[w]
	if cap(cs) < len(s.plan.groups) {
		cs = make([]slotCache, len(s.plan.groups))
	}
	cs = cs[:len(s.plan.groups)]
	for i := range cs {
		cs[i].set = nil
	}
	s.slots[w] = cs
	return cs
}

// refsPlan is a list of feature references resolved against one version
// of the catalog. It is immutable, and kept for the next requests asking
// the same list (clients usually ask the same features every time).
type refsPlan struct {
	catalog *Views
	names   []string
	refs    []refPlan
	views   []*View
	groups  []group
	order   []int // indices into refs, grouped
}

// planCacheSize is how many distinct reference lists are kept resolved.
const planCacheSize = 8

// Result is the answer to Get: Rows × Cols values in row-major order.
// Release returns its buffers for reuse; Values must not be used after.
type Result struct {
	Rows, Cols int
	Values     []Value
	o          *Online
	s          *scratch
}

// Row returns the values of entity row r.
func (r *Result) Row(i int) []Value { return r.Values[i*r.Cols : (i+1)*r.Cols] }

// Release recycles the result's buffers.
func (r *Result) Release() {
	if r.s == nil {
		return
	}
	s := r.s
	r.s, r.Values = nil, nil
	// Huge requests do not pin their buffers in the pool.
	if cap(s.values) > 1<<16 || cap(s.fetches) > 1<<14 {
		return
	}
	for i := range s.fetches {
		clear(s.fetches[i].tiles)
		s.fetches[i].tiles = s.fetches[i].tiles[:0]
		s.fetches[i].view, s.fetches[i].entity = "", ""
	}
	clear(s.values)
	s.plan = nil
	r.o.pool.Put(s)
}

// Get reads refs ("view:feature") for every entity row as of the clock's
// now. Errors are *RequestError for bad input, ErrOverloaded, the
// context's error, or a store error. Get keeps no string of refs or rows
// after it returns.
func (o *Online) Get(ctx context.Context, refs []string, rows Rows) (*Result, error) {
	if err := o.check(refs, rows); err != nil {
		return nil, err
	}
	select {
	case o.sem <- struct{}{}:
	default:
		return nil, ErrOverloaded
	}
	defer func() { <-o.sem }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s := o.pool.Get().(*scratch)
	nrows := rows.Len()
	res := &Result{Rows: nrows, Cols: len(refs), o: o, s: s}
	if err := o.plan(s, refs, rows); err != nil {
		res.Release()
		return nil, err
	}
	nowMs := o.now().UnixMilli()
	n := nrows * len(refs)
	if cap(s.values) < n {
		s.values = make([]Value, n)
	}
	s.values = s.values[:n]
	if err := o.readRows(ctx, s, nrows, nowMs); err != nil {
		res.Release()
		return nil, err
	}
	// A caller that gave up gets no answer computed after its deadline.
	if err := ctx.Err(); err != nil {
		res.Release()
		return nil, err
	}
	res.Values = s.values
	return res, nil
}

func (o *Online) check(refs []string, rows Rows) error {
	nrows := rows.Len()
	switch {
	case len(refs) == 0:
		return &RequestError{Field: "features", Msg: "at least one feature reference (view:feature) is required"}
	case nrows == 0:
		return &RequestError{Field: "entities", Msg: "at least one entity row is required"}
	case len(refs) > o.limits.MaxFeatures:
		return &RequestError{Field: "features", Msg: fmt.Sprintf("%d feature references, the limit is %d", len(refs), o.limits.MaxFeatures)}
	case nrows > o.limits.MaxRows:
		return &RequestError{Field: "entities", Msg: fmt.Sprintf("%d entity rows, the limit is %d", nrows, o.limits.MaxRows)}
	case nrows*len(refs) > o.limits.MaxValues:
		return &RequestError{Field: "entities", Msg: fmt.Sprintf("%d rows × %d features = %d values, the limit is %d", nrows, len(refs), nrows*len(refs), o.limits.MaxValues)}
	}
	return nil
}

// plan resolves refs against the catalog (or finds them resolved) and
// lists the (view, entity) reads.
func (o *Online) plan(s *scratch, refs []string, rows Rows) error {
	views := o.catalog.Views()
	s.plan = nil
	for i := range o.plans {
		if p := o.plans[i].Load(); p != nil && p.catalog == views && slices.Equal(p.names, refs) {
			s.plan = p
			break
		}
	}
	if s.plan == nil {
		p, err := resolve(views, refs)
		if err != nil {
			return err
		}
		o.plans[o.nextPlan.Add(1)%planCacheSize].Store(p)
		s.plan = p
	}
	return s.planFetches(rows)
}

// resolve resolves refs against views. The plan outlives the request, so
// it keeps copies of the names (a request's strings may be parts of its
// whole encoded body).
func resolve(views *Views, refs []string) (*refsPlan, error) {
	p := &refsPlan{catalog: views, names: make([]string, len(refs)), refs: make([]refPlan, 0, len(refs))}
	for i, ref := range refs {
		p.names[i] = strings.Clone(ref)
	}
	for i, ref := range refs {
		vname, fname, ok := strings.Cut(ref, ":")
		if !ok || vname == "" || fname == "" {
			return nil, &RequestError{Field: "features[" + strconv.Itoa(i) + "]", Msg: fmt.Sprintf("%q is not of the form view:feature", ref)}
		}
		v, ok := views.Get(vname)
		if !ok {
			return nil, &RequestError{Field: "features[" + strconv.Itoa(i) + "]", Msg: fmt.Sprintf("unknown feature view %q", vname)}
		}
		fi, ok := v.Feature(fname)
		if !ok {
			return nil, &RequestError{Field: "features[" + strconv.Itoa(i) + "]", Msg: fmt.Sprintf("feature view %q has no feature %q", vname, fname)}
		}
		vi := slices.Index(p.views, v)
		if vi < 0 {
			vi = len(p.views)
			p.views = append(p.views, v)
		}
		f := v.Spec.Features[fi]
		p.refs = append(p.refs, refPlan{
			view:  vi,
			feat:  f,
			agg:   served.AggOf(f.Aggregation),
			resMs: tiles.ResolutionOf(f).Milliseconds(),
			winMs: time.Duration(f.Window).Milliseconds(),
		})
	}
	p.planGroups()
	return p, nil
}

// planFetches lists the (view, entity) reads of rows.
func (s *scratch) planFetches(rows Rows) error {
	views := s.plan.views
	n := rows.Len() * len(views)
	if cap(s.fetches) < n {
		s.fetches = append(s.fetches[:cap(s.fetches)], make([]fetch, n-cap(s.fetches))...)
	}
	s.fetches = s.fetches[:n]
	for r := range rows.Len() {
		for vi, v := range views {
			id, err := s.entityID(v.Spec, rows, r)
			if err != nil {
				return &RequestError{Field: "entities[" + strconv.Itoa(r) + "]", Msg: err.Error()}
			}
			f := &s.fetches[r*len(views)+vi]
			f.view, f.entity, f.newest = v.Spec.Name, id, 0
			f.tiles = f.tiles[:0]
		}
	}
	return nil
}

// planGroups sorts the refs into groups of one view and window.
func (p *refsPlan) planGroups() {
	inGroup := make([]int, len(p.refs))
	for i := range p.refs {
		r := &p.refs[i]
		gi := -1
		for j := range p.groups {
			if g := &p.groups[j]; g.view == r.view && g.resMs == r.resMs && g.winMs == r.winMs {
				gi = j
				break
			}
		}
		if gi < 0 {
			gi = len(p.groups)
			p.groups = append(p.groups, group{view: r.view, resMs: r.resMs, winMs: r.winMs})
		}
		p.groups[gi].hi++ // a count for now
		inGroup[i] = gi
	}
	n := 0
	for j := range p.groups {
		g := &p.groups[j]
		g.lo, g.hi, n = n, n, n+g.hi
	}
	p.order = make([]int, len(p.refs))
	for i, gi := range inGroup {
		g := &p.groups[gi]
		p.order[g.hi] = i
		g.hi++
	}
}

func (s *scratch) entityID(v *featurespec.View, rows Rows, r int) (string, error) {
	keys := v.Entity.JoinKeys
	if len(keys) == 1 {
		id, ok := rows.JoinKey(r, keys[0])
		if !ok || id == "" {
			return "", fmt.Errorf("missing join key %q of feature view %q", keys[0], v.Name)
		}
		return id, nil
	}
	s.keys = s.keys[:0]
	for _, k := range keys {
		id, ok := rows.JoinKey(r, k)
		if !ok || id == "" {
			return "", fmt.Errorf("missing join key %q of feature view %q", k, v.Name)
		}
		s.keys = append(s.keys, id)
	}
	return tiles.EntityID(s.keys), nil
}

// readRows fetches and computes every row, spreading the rows over
// goroutines when there are enough store reads to be worth it: reads of a
// remote store overlap, and merging tiles of many rows uses every core.
func (o *Online) readRows(ctx context.Context, s *scratch, rows int, nowMs int64) error {
	nv := len(s.plan.views)
	perRow := max(1, nv)
	workers := min(o.limits.FetchParallelism, rows, (rows*perRow+o.limits.FetchChunk-1)/o.limits.FetchChunk)
	if workers <= 1 {
		return o.readRange(ctx, s, s.slotCaches(0), 0, rows, nowMs)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	per := (rows + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min(rows, (w+1)*per)
		if lo >= hi {
			break
		}
		caches := s.slotCaches(w)
		wg.Go(func() { errs[w] = o.readRange(ctx, s, caches, lo, hi, nowMs) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readRange fetches and computes rows [lo, hi).
func (o *Online) readRange(ctx context.Context, s *scratch, caches []slotCache, lo, hi int, nowMs int64) error {
	p := s.plan
	nv := len(p.views)
	if err := o.fetchRange(ctx, s.fetches[lo*nv:hi*nv]); err != nil {
		return err
	}
	cols := len(p.refs)
	for r := lo; r < hi; r++ {
		out := s.values[r*cols : (r+1)*cols]
		for gi := range p.groups {
			g := &p.groups[gi]
			o.computeGroup(p, &s.fetches[r*nv+g.view], g, &caches[gi], out, nowMs)
		}
	}
	return nil
}

func (o *Online) fetchRange(ctx context.Context, fs []fetch) error {
	for i := range fs {
		f := &fs[i]
		ts, err := o.store.GetTiles(ctx, f.view, f.entity, f.tiles[:0])
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read tiles of %s %q: %w", f.view, f.entity, err)
		}
		f.tiles = ts
		for _, t := range ts {
			f.newest = max(f.newest, t.MaxEventMs)
		}
	}
	return nil
}

// computeGroup merges the features of group g of one entity at nowMs into
// out (the entity's row); c finds the features in tiles.
func (o *Online) computeGroup(pl *refsPlan, f *fetch, g *group, c *slotCache, out []Value, nowMs int64) {
	idx := pl.order[g.lo:g.hi]
	if len(f.tiles) == 0 {
		for _, i := range idx {
			out[i] = Value{Status: StatusNotFound}
		}
		return
	}
	from, to := served.Bounds(nowMs, g.winMs, g.resMs)
	sp := span(f.tiles, g.resMs, from, to)
	var e *spanEntry
	var last *Tile
	if len(sp) > 1 {
		e = o.cache.entry(sp[:len(sp)-1], pl.refs, idx)
		last = sp[len(sp)-1]
	}
	maxAgeMs := pl.views[g.view].MaxAgeMs
	for k, i := range idx {
		p := &pl.refs[i]
		var w served.Window
		if m, ok := e.get(k, p.feat.Name); ok {
			// The same merges in the same order as over sp: the run (merged
			// in order into a zero state), then the newest tile.
			w = served.Window{IR: m.ir, Newest: m.newest}
			if x, ok := c.state(last, pl.refs, idx, k); ok {
				w.Add(x, last.MaxEventMs)
			}
		} else {
			for _, t := range sp {
				if x, ok := c.state(t, pl.refs, idx, k); ok {
					w.Add(x, t.MaxEventMs)
				}
			}
		}
		served.Set(&out[i], &w.IR, w.Newest, f.newest, p.agg, maxAgeMs, nowMs)
	}
}

// window merges feature over sp (a span: the tiles of one window), the
// way tiles.Window merges a window's tiles: in order, into a zero state.
// It returns the state and the newest event time that contributed.
func window(sp []*Tile, feature string) (tiles.IR, int64) {
	var w served.Window
	for _, t := range sp {
		if ir, ok := t.Feature(feature); ok {
			w.Add(ir, t.MaxEventMs)
		}
	}
	return w.IR, w.Newest
}

// span narrows tiles sorted by (resolution, start) to those of resolution
// resMs starting in [from, to].
func span(ts []*Tile, resMs, from, to int64) []*Tile {
	less := func(t *Tile, res, start int64) bool {
		return t.ResolutionMs < res || (t.ResolutionMs == res && t.StartMs < start)
	}
	lo, hi := 0, len(ts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if less(ts[m], resMs, from) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	end := lo
	for end < len(ts) && ts[end].ResolutionMs == resMs && ts[end].StartMs <= to {
		end++
	}
	return ts[lo:end]
}
