package core

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// StableTiles is implemented by stores whose GetTiles returns the very
// same *Tile again for a tile that is unchanged (at least while it is hot;
// a write stores a new object). Windows over such a store are cached by
// tile identity.
type StableTiles interface {
	StableTiles() bool
}

// windowCache remembers, for a run of tiles, the merge of each requested
// feature over all but the newest tile of a window. A read merges the
// cached state with the newest tile only, instead of every tile of a long
// window (a 7-day window of hourly tiles is 169 tiles). An entry is keyed by
// the run's first tile and length and is used only while every tile of the
// run is still the same object, so a rewritten tile (a late event)
// invalidates it. Entries are immutable once published: a read that needs a
// feature an entry lacks publishes a copy with it added, so readers use an
// entry without holding a lock.
type windowCache struct {
	seed        maphash.Seed
	maxPerShard int
	shards      [64]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[spanKey]*spanEntry
}

type spanKey struct {
	first *Tile
	n     int
}

type spanEntry struct {
	tiles []*Tile
	// irs holds the merged features, few per entry (the features of one
	// window of one view), so a linear search beats a map.
	irs []featureIR
}

type featureIR struct {
	name string
	m    mergedIR
}

type mergedIR struct {
	ir     tiles.IR
	newest int64
}

// get returns the merged state of feature, if the entry has it; k is
// where it probably is (entries are built in the order a group asks for
// its features).
func (e *spanEntry) get(k int, feature string) (*mergedIR, bool) {
	if e == nil {
		return nil, false
	}
	if k >= 0 && k < len(e.irs) && e.irs[k].name == feature {
		return &e.irs[k].m, true
	}
	for i := range e.irs {
		if e.irs[i].name == feature {
			return &e.irs[i].m, true
		}
	}
	return nil, false
}

func newWindowCache(maxEntries int) *windowCache {
	c := &windowCache{seed: maphash.MakeSeed(), maxPerShard: max(1, maxEntries/64)}
	for i := range c.shards {
		c.shards[i].m = map[spanKey]*spanEntry{}
	}
	return c
}

func (c *windowCache) shard(k spanKey) *cacheShard {
	return &c.shards[maphash.Comparable(c.seed, k)%uint64(len(c.shards))]
}

// lookup returns the entry of exactly the tiles of run, or nil.
func (c *windowCache) lookup(run []*Tile) *spanEntry {
	k := spanKey{run[0], len(run)}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e != nil && !slices.Equal(e.tiles, run) {
		delete(sh.m, k)
		return nil
	}
	return e
}

// publish makes e the entry of its tiles.
func (c *windowCache) publish(e *spanEntry) {
	k := spanKey{e.tiles[0], len(e.tiles)}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k]; !ok && len(sh.m) >= c.maxPerShard {
		// Crude but bounded: a full shard starts over.
		clear(sh.m)
	}
	sh.m[k] = e
}

// cacheable reports whether ir can be shared: sketches are pointers that a
// later Merge would modify in place.
func cacheable(ir *tiles.IR) bool { return ir.Distinct == nil && ir.Quantiles == nil }

// sketched reports whether agg's state includes a sketch (never cacheable).
func sketched(agg string) bool {
	return agg == featurespec.AggApproxDistinct || featurespec.IsQuantile(agg)
}

// minCachedRun is the shortest run worth caching.
const minCachedRun = 4

// entry returns the cache entry of run holding every cacheable feature of
// refs (all of one window of one view), computing and publishing what is
// missing; nil when there is no cache or run is too short to be worth it.
func (c *windowCache) entry(run []*Tile, refs []refPlan, idx []int) *spanEntry {
	if c == nil || len(run) < minCachedRun {
		return nil
	}
	e := c.lookup(run)
	missing := 0
	for _, i := range idx {
		if _, ok := e.get(-1, refs[i].feat.Name); !ok && !sketched(refs[i].feat.Aggregation) {
			missing++
		}
	}
	if missing == 0 {
		return e
	}
	n := &spanEntry{}
	if e != nil {
		n.tiles = e.tiles
		n.irs = make([]featureIR, len(e.irs), len(e.irs)+missing)
		copy(n.irs, e.irs)
	} else {
		n.tiles = slices.Clone(run)
		n.irs = make([]featureIR, 0, missing)
	}
	added := false
	for _, i := range idx {
		f := refs[i].feat
		if _, ok := n.get(-1, f.Name); ok || sketched(f.Aggregation) {
			continue // asked twice in one request, or never cacheable
		}
		var m mergedIR
		m.ir, m.newest = window(run, f.Name)
		if !cacheable(&m.ir) {
			continue
		}
		n.irs = append(n.irs, featureIR{name: f.Name, m: m})
		added = true
	}
	if added {
		c.publish(n)
	}
	return n
}
