package featureserver

import "github.com/tributary-ml/tributary/services/featureserver/internal/core"

// TileStore is the store interface Deps.WrapStore wraps, named here so
// that callers outside this module (other services' tests) can embed it
// in a wrapper that holds or records reads.
type TileStore = core.TileStore
