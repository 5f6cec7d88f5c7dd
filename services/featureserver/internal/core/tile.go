package core

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/tributary-ml/tributary/libs/tiles"
)

// Tile is a stored tile as the read path reads it: the states of a
// tiles.Tile of one (view, entity), without the names. The live tiles of a
// store are most of the featureserver's heap, which the garbage collector
// marks in full on every cycle, so a Tile is a few small objects: its
// feature names are a FeatureSet shared by every tile with the same
// features, features of equal state share one IR (the featurizer keeps
// one state for the features of a column that need the same one, so most
// features of a tile have a twin), and the distinct states are one block.
// A decoded tiles.Tile is one map of names to separately allocated states
// per tile (~5x the scanned bytes). Tiles are built by a TileCompactor and
// never change.
type Tile struct {
	ResolutionMs int64
	StartMs      int64
	// MaxEventMs is the newest event time that contributed.
	MaxEventMs int64
	features   *FeatureSet
	// state[i] is the index in irs of the state of features.names[i].
	state []uint32
	irs   []tiles.IR
}

// Feature returns the state of feature name, if the tile has it.
func (t *Tile) Feature(name string) (*tiles.IR, bool) {
	i, ok := t.features.index[name]
	if !ok {
		return nil, false
	}
	return &t.irs[t.state[i]], true
}

// Len is the number of features the tile holds.
func (t *Tile) Len() int { return len(t.state) }

// Full returns the tiles.Tile t was built from, as tile view of entity
// (without the source offsets, which readers ignore). Its states are t's:
// they must not be modified.
func (t *Tile) Full(view, entity string) *tiles.Tile {
	out := &tiles.Tile{View: view, Entity: entity, ResolutionMs: t.ResolutionMs, StartMs: t.StartMs, MaxEventMs: t.MaxEventMs}
	if len(t.state) > 0 {
		out.Features = make(map[string]*tiles.IR, len(t.state))
		for i, name := range t.features.names {
			out.Features[name] = &t.irs[t.state[i]]
		}
	}
	return out
}

// FeatureSet is a sorted set of feature names, shared by the tiles holding
// exactly those features.
type FeatureSet struct {
	names []string
	index map[string]int
}

// TileCompactor builds Tiles from decoded tiles, sharing feature sets
// between them. It is safe for concurrent use.
type TileCompactor struct {
	mu   sync.Mutex
	sets map[string]*FeatureSet
}

// maxFeatureSets bounds the shared feature sets (tiles are outside input);
// tiles with other sets get their own.
const maxFeatureSets = 1 << 12

// NewTileCompactor returns an empty compactor.
func NewTileCompactor() *TileCompactor {
	return &TileCompactor{sets: map[string]*FeatureSet{}}
}

// Tile returns t as a Tile. t is not modified and not kept: states are
// copied (sketches are shared with t, which the read path never modifies).
func (c *TileCompactor) Tile(t *tiles.Tile) *Tile {
	n := &Tile{ResolutionMs: t.ResolutionMs, StartMs: t.StartMs, MaxEventMs: t.MaxEventMs}
	names := make([]string, 0, len(t.Features))
	for name := range t.Features {
		names = append(names, name)
	}
	slices.Sort(names)
	n.features = c.set(names)
	n.state = make([]uint32, len(names))
	// Distinct states, few per tile: a linear search.
	var block []tiles.IR
	for i, name := range names {
		ir := t.Features[name]
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
		n.state[i] = uint32(at)
	}
	if cap(block) > len(block) {
		block = slices.Clone(block)
	}
	n.irs = block
	return n
}

// set returns the shared set of the sorted names.
func (c *TileCompactor) set(names []string) *FeatureSet {
	key := strings.Join(names, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sets[key]; ok {
		return s
	}
	s := &FeatureSet{names: make([]string, len(names)), index: make(map[string]int, len(names))}
	for i, name := range names {
		// The set outlives the tile it came from: its own copies.
		s.names[i] = strings.Clone(name)
		s.index[s.names[i]] = i
	}
	if len(c.sets) < maxFeatureSets {
		c.sets[key] = s
	}
	return s
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
		a.FirstPos == b.FirstPos && a.LastPos == b.LastPos &&
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
