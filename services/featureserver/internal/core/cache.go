package core

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/tributary-ml/tributary/libs/tiles"
)

// StableTiles is implemented by stores whose GetTiles returns the very same
// *tiles.Tile for as long as a tile is unchanged (a write stores a new
// one). Windows over such a store are cached by tile identity.
type StableTiles interface {
	StableTiles() bool
}

// windowCache remembers, for a run of tiles, each feature's merge over all
// but the newest tile of the window. A read merges the cached state with
// the newest tile only, instead of every tile of a long window (a 7-day
// window of hourly tiles is 169 tiles). An entry is keyed by the run's
// first tile and length and is used only while every tile of the run is
// still the same object, so a rewritten tile (a late event) invalidates it.
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
	first *tiles.Tile
	n     int
}

type spanEntry struct {
	tiles []*tiles.Tile
	irs   map[string]mergedIR
}

type mergedIR struct {
	ir     tiles.IR
	newest int64
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

func (c *windowCache) get(run []*tiles.Tile, feature string) (mergedIR, bool) {
	k := spanKey{run[0], len(run)}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil {
		return mergedIR{}, false
	}
	if !slices.Equal(e.tiles, run) {
		delete(sh.m, k)
		return mergedIR{}, false
	}
	m, ok := e.irs[feature]
	return m, ok
}

func (c *windowCache) put(run []*tiles.Tile, feature string, m mergedIR) {
	k := spanKey{run[0], len(run)}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil || !slices.Equal(e.tiles, run) {
		if len(sh.m) >= c.maxPerShard {
			// Crude but bounded: a full shard starts over.
			clear(sh.m)
		}
		e = &spanEntry{tiles: slices.Clone(run), irs: map[string]mergedIR{}}
		sh.m[k] = e
	}
	e.irs[feature] = m
}

// cacheable reports whether ir can be shared: sketches are pointers that a
// later Merge would modify in place.
func cacheable(ir *tiles.IR) bool { return ir.Distinct == nil && ir.Quantiles == nil }

// minCachedRun is the shortest run worth caching.
const minCachedRun = 4

// window is tiles.Window over sp (already narrowed to the feature's
// resolution and window), through the cache when there is one.
func (c *windowCache) window(sp []*tiles.Tile, p *refPlan, nowMs int64) (tiles.IR, int64) {
	if c == nil || len(sp) < minCachedRun+1 {
		return tiles.Window(sp, p.feat, nowMs)
	}
	run, last := sp[:len(sp)-1], sp[len(sp)-1]
	m, ok := c.get(run, p.feat.Name)
	if !ok {
		m.ir, m.newest = tiles.Window(run, p.feat, nowMs)
		if !cacheable(&m.ir) {
			return tiles.Window(sp, p.feat, nowMs)
		}
		c.put(run, p.feat.Name, m)
	}
	// Same order of merges as tiles.Window over sp: the run, then last.
	if ir, ok := last.Features[p.feat.Name]; ok {
		m.ir.Merge(ir)
		m.newest = max(m.newest, last.MaxEventMs)
	}
	return m.ir, m.newest
}
