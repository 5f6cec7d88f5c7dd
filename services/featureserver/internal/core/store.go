// Package core is the featureserver's application core: the catalog of
// feature views, the online read path that merges tiles at request time, and
// the ports its adapters implement. It does no I/O of its own.
package core

import (
	"context"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// TileWrite is one tile to store and the Unix time (ms) after which no
// window can read it any more; 0 keeps it forever (latest values).
type TileWrite struct {
	Tile      *tiles.Tile
	ExpiresMs int64
}

// TileStore is the online store port. The embedded store and the ScyllaDB
// adapter implement it and pass the same conformance suite (storetest).
type TileStore interface {
	// PutTiles stores a batch durably before returning. A tile replaces the
	// stored tile with the same key (view, entity, resolution, start), so
	// writing a batch twice has the effect of writing it once. Tiles whose
	// expiry has passed may be dropped.
	PutTiles(ctx context.Context, batch []TileWrite) error
	// GetTiles appends the unexpired tiles of (view, entity) to dst ordered
	// by resolution and then start, and returns the extended slice. Tiles
	// are immutable. view and entity may be parts of a much larger string
	// (a whole request's bytes): a store keeping either past the call
	// keeps a copy.
	GetTiles(ctx context.Context, view, entity string, dst []*Tile) ([]*Tile, error)
	// Close releases the store.
	Close() error
}

// ExpiryOf is when a tile of view stops being readable by any window of the
// view: a tile starting at s with resolution r is inside a window w while
// now < s + r + w, and Retention is the longest such w plus r. Latest values
// (resolution 0) never expire. An unknown view keeps tiles for the longest
// window a view may declare, so they are not lost before the view appears.
func ExpiryOf(v *featurespec.View, t *tiles.Tile) int64 {
	if t.ResolutionMs == 0 {
		return 0
	}
	res := time.Duration(t.ResolutionMs) * time.Millisecond
	if v == nil {
		return t.StartMs + (366*24*time.Hour + res).Milliseconds()
	}
	return t.StartMs + tiles.Retention(v, res).Milliseconds()
}
