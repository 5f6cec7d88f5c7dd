package featureserver

import (
	"context"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// TileStore is the store as Deps.WrapStore sees it, named here so that
// callers outside this module (other services' tests) can embed it in a
// wrapper that holds or records reads. Reads return tiles as decoded
// (tiles.Tile), not the stores' compact core.Tile, so such wrappers need
// no type of this module; converting costs a copy per tile read, which
// only wrapped stores (tests) pay, and a wrapped store does not get the
// window cache (its tiles are new objects on every read).
type TileStore interface {
	PutTiles(ctx context.Context, batch []core.TileWrite) error
	GetTiles(ctx context.Context, view, entity string, dst []*tiles.Tile) ([]*tiles.Tile, error)
	Close() error
}

// decodedStore shows a core.TileStore as a TileStore.
type decodedStore struct{ core.TileStore }

func (s decodedStore) GetTiles(ctx context.Context, view, entity string, dst []*tiles.Tile) ([]*tiles.Tile, error) {
	ts, err := s.TileStore.GetTiles(ctx, view, entity, nil)
	for _, t := range ts {
		dst = append(dst, t.Full(view, entity))
	}
	return dst, err
}

// compactStore shows a TileStore as a core.TileStore.
type compactStore struct {
	TileStore
	compact *core.TileCompactor
}

func (s compactStore) GetTiles(ctx context.Context, view, entity string, dst []*core.Tile) ([]*core.Tile, error) {
	ts, err := s.TileStore.GetTiles(ctx, view, entity, nil)
	for _, t := range ts {
		dst = append(dst, s.compact.Tile(t))
	}
	return dst, err
}

// wrapStore applies wrap to store.
func wrapStore(store core.TileStore, wrap func(TileStore) TileStore) core.TileStore {
	return compactStore{TileStore: wrap(decodedStore{store}), compact: core.NewTileCompactor()}
}
