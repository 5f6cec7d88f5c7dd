package scylla

import (
	"bytes"
	"hash/maphash"
	"sync"

	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// tileCache keeps decoded tiles by key together with the bytes they were
// decoded from. A read whose row carries the very same bytes gets the
// cached object back instead of decoding JSON again (the bulk of a read's
// work: an entity with a 30-day window has hundreds of tiles), and since an
// unchanged tile then keeps its identity, the core's window cache works
// over ScyllaDB as it does over the embedded store. A rewritten tile has
// other bytes and is decoded into a new object, so a returned object never
// changes. Bounded by the encoded bytes it holds; a full shard starts over.
type tileCache struct {
	seed        maphash.Seed
	maxPerShard int64
	shards      [64]tileShard
}

type tileShard struct {
	mu    sync.Mutex
	m     map[tileKey]*cachedTile
	bytes int64
}

type tileKey struct {
	view, entity string
	resMs        int64
	startMs      int64
}

type cachedTile struct {
	raw   []byte
	maxEv int64
	t     *core.Tile
}

func newTileCache(maxBytes int64) *tileCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &tileCache{seed: maphash.MakeSeed(), maxPerShard: max(1, maxBytes/64)}
	for i := range c.shards {
		c.shards[i].m = map[tileKey]*cachedTile{}
	}
	return c
}

// shard picks the shard of one partition: a read takes one shard's lock
// per row, never a second shard.
func (c *tileCache) shard(view, entity string) *tileShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(view)
	h.WriteByte(0)
	h.WriteString(entity)
	return &c.shards[h.Sum64()%uint64(len(c.shards))]
}

// get returns the tile decoded from exactly raw with maxEv, if cached.
func (sh *tileShard) get(k tileKey, maxEv int64, raw []byte) *core.Tile {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[k]
	if e == nil || e.maxEv != maxEv || !bytes.Equal(e.raw, raw) {
		return nil
	}
	return e.t
}

// put caches t as decoded from raw (copied: the driver reuses its buffer).
func (sh *tileShard) put(k tileKey, maxEv int64, raw []byte, t *core.Tile, maxBytes int64) {
	size := int64(len(raw) + len(k.view) + len(k.entity) + 64)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[k]; old != nil {
		sh.bytes -= int64(len(old.raw) + len(k.view) + len(k.entity) + 64)
	}
	if sh.bytes+size > maxBytes {
		clear(sh.m)
		sh.bytes = 0
	}
	sh.m[k] = &cachedTile{raw: bytes.Clone(raw), maxEv: maxEv, t: t}
	sh.bytes += size
}
