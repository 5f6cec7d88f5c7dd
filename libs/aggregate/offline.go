package aggregate

import (
	"cmp"
	"slices"

	"github.com/tributary-ml/tributary/libs/tiles"
)

// What the offline service (point-in-time training sets) needs beyond
// Apply: reading an entity's live tiles in place while records are being
// replayed, and dropping expired tiles without emitting anything.

// RoutedEventTime is the event time of a routed change (a single one, as
// Router.Route emits them): its add image's, or its retract image's when
// it only retracts.
func RoutedEventTime(value []byte) (int64, error) {
	var rt routed
	if err := decodeRouted(value, &rt); err != nil {
		return 0, err
	}
	if rt.hasAdd {
		return rt.add.ts, nil
	}
	return rt.retract.ts, nil
}

// DropExpired expires the tiles the view clocks have passed, as Flush
// does, and forgets which tiles changed, without encoding anything: for
// callers that read tiles in place instead of emitting them.
func (e *Engine) DropExpired() {
	for _, sh := range e.shards {
		for i := range sh.clocks {
			e.expire(sh, i)
		}
	}
	for _, st := range e.dirty {
		st.dirty = false
	}
	clear(e.dirty)
	e.dirty = e.dirty[:0]
	e.C.Expired.Add(int64(len(e.tombs)))
	e.tombs = e.tombs[:0]
}

// FeatureSlot locates a feature's state in the tiles of its view.
type FeatureSlot struct {
	// ResolutionMs is the resolution of the tiles holding the feature.
	ResolutionMs int64
	ir           int
}

// Slot returns where view's feature is kept.
func (e *Engine) Slot(view, feature string) (FeatureSlot, bool) {
	vp := e.byName[view]
	if vp == nil {
		return FeatureSlot{}, false
	}
	for _, g := range vp.groups {
		for _, f := range g.feats {
			if f.name == feature {
				return FeatureSlot{ResolutionMs: g.resMs, ir: f.ir}, true
			}
		}
	}
	return FeatureSlot{}, false
}

// TileRef is a live tile read in place: valid until the next Apply,
// ApplyRouted, Flush or DropExpired.
type TileRef struct{ st *tileState }

// ResolutionMs is the tile's resolution (0 for latest values).
func (t TileRef) ResolutionMs() int64 { return t.st.group.resMs }

// StartMs is the tile's start.
func (t TileRef) StartMs() int64 { return t.st.startMs }

// MaxEventMs is the newest event time that contributed to the tile.
func (t TileRef) MaxEventMs() int64 { return t.st.maxEventMs }

// State returns the tile's state of the feature at s; false when the tile
// is of another resolution. The state is the engine's: do not modify it.
func (t TileRef) State(s FeatureSlot) (*tiles.IR, bool) {
	if t.st.group.resMs != s.ResolutionMs || s.ir >= len(t.st.irs) {
		return nil, false
	}
	return &t.st.irs[s.ir], true
}

// AppendEntityTiles appends the live tiles of one entity of view to dst,
// ordered by resolution and then start (the order a tile store returns
// them in), and returns the extended slice.
func (e *Engine) AppendEntityTiles(dst []TileRef, view, entity string) []TileRef {
	vp := e.byName[view]
	if vp == nil {
		return dst
	}
	sh := e.shards[int32(PartitionOf(view, entity, e.parts))]
	if sh == nil {
		return dst
	}
	en := sh.ents[vp.idx][entity]
	if en == nil {
		return dst
	}
	from := len(dst)
	for _, st := range en.tiles {
		dst = append(dst, TileRef{st})
	}
	slices.SortFunc(dst[from:], func(a, b TileRef) int {
		if c := cmp.Compare(a.st.group.resMs, b.st.group.resMs); c != 0 {
			return c
		}
		return cmp.Compare(a.st.startMs, b.st.startMs)
	})
	return dst
}

// Repositioner rewrites the source position of routed changes. Replaying
// changes in another order than their sources' (offline, by event time)
// needs positions that increase in the replay order: the engine skips a
// change whose tile already holds a later position of the same source
// partition, taking it for a replay. Its zero value is ready; it is not
// safe for concurrent use.
type Repositioner struct {
	rt    routed
	topic []byte
}

// Append appends to dst a copy of the routed change value with its source
// position replaced.
func (r *Repositioner) Append(dst, value []byte, topic string, partition, offset int64) ([]byte, error) {
	if err := decodeRouted(value, &r.rt); err != nil {
		return dst, err
	}
	// The decoded fields alias value: the new topic is the
	// Repositioner's own copy.
	r.topic = append(r.topic[:0], topic...)
	r.rt.srcTopic = r.topic
	r.rt.srcPart, r.rt.srcOffset = partition, offset
	return appendRouted(dst, &r.rt), nil
}
