package embedded

import (
	"encoding/json"
	"math"
	"slices"

	"github.com/tributary-ml/tributary/libs/tiles"
)

// The index holds every live tile decoded, and the garbage collector marks
// all of it on every cycle: with 50-feature tiles decoded as they come
// (one IR object, one feature-name string and boxed first/last values per
// feature) 200 entities of the benchmark view are ~3.6M objects, and on the
// one core the server gets a GC cycle costs more than the requests it
// interrupts. compactor rebuilds each stored tile so that it shares what
// it can: feature names and view names are interned, features with equal
// state share one IR (the featurizer keeps one state for the features of a
// column that need the same one, so most features of a tile have a twin),
// and a tile's distinct IRs live in one block.
type compactor struct {
	names map[string]string
}

// maxInterned bounds the interned names (tiles are outside input).
const maxInterned = 1 << 16

func newCompactor() *compactor { return &compactor{names: map[string]string{}} }

// intern returns the store's copy of s.
func (c *compactor) intern(s string) string {
	if v, ok := c.names[s]; ok {
		return v
	}
	if len(c.names) < maxInterned {
		c.names[s] = s
	}
	return s
}

// tile returns a copy of t built from shared parts; entity is the string
// the index keys t's entity by. t itself is not modified (the caller may
// still use it); IR values are copied, sketches are shared with t.
func (c *compactor) tile(t *tiles.Tile, entity string) *tiles.Tile {
	n := &tiles.Tile{
		View:         c.intern(t.View),
		Entity:       entity,
		ResolutionMs: t.ResolutionMs,
		StartMs:      t.StartMs,
		MaxEventMs:   t.MaxEventMs,
		Offsets:      t.Offsets,
	}
	if t.Features == nil {
		return n
	}
	// Distinct states, in one block; few per tile, so a linear search.
	names := make([]string, 0, len(t.Features))
	idx := make([]int, 0, len(t.Features))
	var block []tiles.IR
	for name, ir := range t.Features {
		at := -1
		for j := range block {
			if sameIR(&block[j], ir) {
				at = j
				break
			}
		}
		if at < 0 {
			block = append(block, *ir)
			at = len(block) - 1
		}
		names = append(names, name)
		idx = append(idx, at)
	}
	if cap(block) > len(block) {
		block = slices.Clone(block)
	}
	n.Features = make(map[string]*tiles.IR, len(names))
	for i, name := range names {
		n.Features[c.intern(name)] = &block[idx[i]]
	}
	return n
}

// sameIR reports whether a and b are the same state. States holding a
// sketch are never shared (a sketch is a pointer; sharing one would be
// sound, as stored tiles are never modified, but there is nothing to gain
// from comparing them), nor are first/last values that are not scalars.
func sameIR(a, b *tiles.IR) bool {
	if a.Distinct != nil || a.Quantiles != nil || b.Distinct != nil || b.Quantiles != nil {
		return false
	}
	return a.Count == b.Count && a.NumCount == b.NumCount && sameFloat(a.Sum, b.Sum) && sameFloat(a.SumSq, b.SumSq) &&
		sameFloat(a.Min, b.Min) && sameFloat(a.Max, b.Max) && a.FirstMs == b.FirstMs && a.LastMs == b.LastMs &&
		sameScalar(a.First, b.First) && sameScalar(a.Last, b.Last)
}

// sameScalar compares JSON scalars; anything else (objects, arrays) is
// never the same, so == never meets an uncomparable value.
func sameScalar(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case float64:
		y, ok := b.(float64)
		return ok && sameFloat(x, y)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && x == y
	default:
		return false
	}
}

// sameFloat compares bit patterns: -0 and 0 stay apart, a NaN equals itself.
func sameFloat(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
