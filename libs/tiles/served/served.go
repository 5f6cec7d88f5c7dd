// Package served decides what a feature read answers from merged tiles: the
// window a read at an instant covers (sawtooth), the order its tiles are
// merged in, the value an aggregation's state gives (numbers unboxed) and
// its status (PRESENT, NOT_FOUND, STALE) and event time. The featureserver's
// GetOnlineFeatures and the offline point-in-time training sets both answer
// through it, so a training set holds exactly what was served.
//
// A read of a windowed feature at nowMs covers the tiles of the feature's
// resolution whose start lies in [Bounds(nowMs, window, resolution)], i.e.
// from the window's start aligned down to the resolution up to nowMs; a
// latest value (resolution 0) reads its one tile. The tiles are merged in
// order of start into a zero state (Window.Add), and Set turns the state
// into the answer.
package served

import (
	"encoding/json"
	"math"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// Status tells whether a value was found and is fresh.
type Status uint8

// Statuses, mirroring tributary.features.v1.FeatureStatus.
const (
	StatusUnspecified Status = iota
	StatusPresent
	StatusNotFound
	StatusStale
)

// String is the status's name as the API spells it.
func (s Status) String() string {
	switch s {
	case StatusPresent:
		return "PRESENT"
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusStale:
		return "STALE"
	}
	return "UNSPECIFIED"
}

// Kind is the type of a Value.
type Kind uint8

// Kinds of values.
const (
	KindNone Kind = iota
	KindDouble
	KindInt64
	KindString
	KindBool
)

// Value is one feature of one entity as a read answers it.
type Value struct {
	Kind   Kind
	Status Status
	Bool   bool
	Int    int64
	Double float64
	Str    string
	// EventMs is the event time (Unix ms) of the newest event the value
	// reflects; 0 when there is none.
	EventMs int64
}

// NotFound is the answer for an entity without tiles, or a feature
// without a value.
var NotFound = Value{Status: StatusNotFound}

// Bounds is the range of tile starts a read at nowMs of a feature with
// window winMs kept at resolution resMs covers: [from, to]. The window is
// sawtooth: its start is aligned down to the resolution, its end is now.
// Latest values (resMs 0) have one tile, starting at 0.
func Bounds(nowMs, winMs, resMs int64) (from, to int64) {
	if resMs <= 0 {
		return 0, nowMs
	}
	return tiles.StartOf(nowMs-winMs, time.Duration(resMs)*time.Millisecond), nowMs
}

// Window accumulates the tiles of one window: Add them in order of start
// (the order floating-point sums are defined by), into a zero Window.
type Window struct {
	IR tiles.IR
	// Newest is the newest event time of the tiles added.
	Newest int64
}

// Add merges one tile's state of the feature; maxEventMs is the tile's
// newest event time.
func (w *Window) Add(ir *tiles.IR, maxEventMs int64) {
	w.IR.Merge(ir)
	w.Newest = max(w.Newest, maxEventMs)
}

// Agg is an aggregation resolved for Set.
type Agg struct {
	kind aggKind
	name string
}

// AggOf resolves aggregation name (featurespec.Agg*).
func AggOf(name string) Agg { return Agg{kind: aggKindOf(name), name: name} }

// Name is the aggregation's name.
func (a Agg) Name() string { return a.name }

// Set sets v (in place: values are written per feature of every row) to
// the answer for a feature whose window merged to ir, newest being the
// newest event in the window and entityNewest the newest event of the
// entity in the view (over all its readable tiles). A missing value is
// NOT_FOUND; a present one is STALE when its event time is more than
// maxAgeMs (the view's max_age; 0 never) before nowMs. A window no event
// fell into (a count that decayed to 0) is as fresh as the entity's
// newest event. An entity without any tile is NotFound, decided by the
// caller.
func Set(v *Value, ir *tiles.IR, newest, entityNewest int64, agg Agg, maxAgeMs, nowMs int64) {
	if !numericValue(v, ir, agg.kind) {
		raw, found := ir.Value(agg.name)
		if !found {
			*v = NotFound
			return
		}
		*v = FromAny(raw)
	}
	if v.Kind == KindNone {
		*v = NotFound
		return
	}
	if newest == 0 {
		newest = entityNewest
	}
	v.EventMs = newest
	v.Status = StatusPresent
	if maxAgeMs > 0 && nowMs-newest > maxAgeMs {
		v.Status = StatusStale
	}
}

// FromAny converts an aggregation's value (tiles.IR.Value) to a Value:
// numbers (JSON numbers too) are doubles, objects and arrays their JSON
// text; nil is a Value of KindNone.
func FromAny(raw any) Value {
	switch x := raw.(type) {
	case float64:
		return Value{Kind: KindDouble, Double: x}
	case float32:
		return Value{Kind: KindDouble, Double: float64(x)}
	case int64:
		return Value{Kind: KindInt64, Int: x}
	case int:
		return Value{Kind: KindInt64, Int: int64(x)}
	case bool:
		return Value{Kind: KindBool, Bool: x}
	case string:
		return Value{Kind: KindString, Str: x}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return Value{Kind: KindDouble, Double: f}
		}
		return Value{Kind: KindString, Str: x.String()}
	case nil:
		return Value{}
	default:
		// Objects and arrays from JSON sources are served as their JSON text.
		b, err := json.Marshal(x)
		if err != nil {
			return Value{}
		}
		return Value{Kind: KindString, Str: string(b)}
	}
}

// aggKind is an aggregation whose value is a number computed from an IR's
// counters.
type aggKind uint8

const (
	// aggOther is read through tiles.IR.Value.
	aggOther aggKind = iota
	aggCount
	aggSum
	aggAvg
	aggMin
	aggMax
	aggStddev
)

func aggKindOf(agg string) aggKind {
	switch agg {
	case featurespec.AggCount:
		return aggCount
	case featurespec.AggSum:
		return aggSum
	case featurespec.AggAvg:
		return aggAvg
	case featurespec.AggMin:
		return aggMin
	case featurespec.AggMax:
		return aggMax
	case featurespec.AggStddev:
		return aggStddev
	}
	return aggOther
}

// numericValue sets v to what tiles.IR.Value returns for the numeric
// aggregations, without boxing the number in an interface (an allocation
// per value, most of the values a read serves): a number, or Kind KindNone
// when there is none. It returns false, leaving v alone, for aggOther.
// served_test.go checks it against tiles.IR.Value.
func numericValue(v *Value, ir *tiles.IR, kind aggKind) bool {
	var x float64
	switch kind {
	case aggCount:
		x = float64(ir.Count)
	case aggSum:
		x = ir.Sum
	case aggAvg, aggMin, aggMax, aggStddev:
		if ir.NumCount == 0 {
			*v = Value{}
			return true
		}
		switch kind {
		case aggAvg:
			x = ir.Sum / float64(ir.NumCount)
		case aggMin:
			x = ir.Min
		case aggMax:
			x = ir.Max
		default:
			n := float64(ir.NumCount)
			mean := ir.Sum / n
			x = math.Sqrt(math.Max(0, ir.SumSq/n-mean*mean))
		}
	default:
		return false
	}
	*v = Value{Kind: KindDouble, Double: x}
	return true
}
