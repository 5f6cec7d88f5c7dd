// Package tiles is the tile format and tile math shared by the featurizer
// (which builds tiles from events) and the featureserver (which merges them
// at request time).
//
// A tile holds, for one view, one entity and one time bucket of a fixed
// resolution, the intermediate representation (IR) of every feature of that
// resolution. Tiles are emitted whole (an idempotent upsert, never a delta)
// on the compacted topic features.tiles, keyed by view|entity|resolution|start.
// A window is read "sawtooth": its start is aligned down to the resolution
// and its end is the request time, so a read touches at most
// window/resolution+1 tiles and values decay without new events.
package tiles

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
)

// Topic is the compacted topic tiles travel on.
const Topic = "features.tiles"

// TopicPartitions is the partition count of Topic when a service creates it;
// the featurizer and the featureserver create it with the same count,
// whichever starts first.
const TopicPartitions = 4

// Resolution for windows: 5m tiles under 12h, 1h tiles under 12d, 1d above.
// Latest values live in one tile of resolution 0.
func ResolutionFor(window time.Duration) time.Duration {
	switch {
	case window <= 0:
		return 0
	case window < 12*time.Hour:
		return 5 * time.Minute
	case window < 12*24*time.Hour:
		return time.Hour
	default:
		return 24 * time.Hour
	}
}

// ResolutionOf is the tile resolution a feature is kept at.
func ResolutionOf(f featurespec.Feature) time.Duration {
	if f.Aggregation == featurespec.AggLatest {
		return 0
	}
	return ResolutionFor(time.Duration(f.Window))
}

// Retention is how long a tile of res stays useful for view: the longest
// window kept at that resolution plus one resolution. 0 means forever
// (latest values).
func Retention(v *featurespec.View, res time.Duration) time.Duration {
	if res == 0 {
		return 0
	}
	var longest time.Duration
	for _, f := range v.Features {
		if ResolutionOf(f) == res && time.Duration(f.Window) > longest {
			longest = time.Duration(f.Window)
		}
	}
	return longest + res
}

// StartOf aligns an event time (Unix ms) down to its tile of resolution res.
func StartOf(tsMs int64, res time.Duration) int64 {
	r := res.Milliseconds()
	if r == 0 {
		return 0
	}
	m := tsMs % r
	if m < 0 {
		m += r
	}
	return tsMs - m
}

// EntityID joins an entity's join key values, in the view's join key order.
func EntityID(values []string) string { return strings.Join(values, ",") }

// Tile is the full state of one tile.
type Tile struct {
	View         string `json:"view"`
	Entity       string `json:"entity"`
	ResolutionMs int64  `json:"res_ms"`
	StartMs      int64  `json:"start_ms"`
	// MaxEventMs is the newest event time that contributed.
	MaxEventMs int64          `json:"max_event_ms"`
	Features   map[string]*IR `json:"features"`
	// Offsets maps each source partition ("topic/partition") that
	// contributed to the offset of the last record applied. A restarted
	// featurizer skips records at or below it for this tile, so replaying
	// records whose tiles were emitted but whose offsets were not yet
	// committed does not count them twice. Readers may ignore it.
	Offsets map[string]int64 `json:"offsets,omitempty"`
}

// Key is the tile's Kafka key and storage identity.
func (t *Tile) Key() string { return Key(t.View, t.Entity, t.ResolutionMs, t.StartMs) }

// Key formats a tile key.
func Key(view, entity string, resMs, startMs int64) string {
	return string(AppendKey(make([]byte, 0, len(view)+len(entity)+24), view, entity, resMs, startMs))
}

// AppendKey appends the tile key Key formats to b.
func AppendKey(b []byte, view, entity string, resMs, startMs int64) []byte {
	b = append(b, view...)
	b = append(b, '|')
	b = append(b, entity...)
	b = append(b, '|')
	b = strconv.AppendInt(b, resMs, 10)
	b = append(b, '|')
	return strconv.AppendInt(b, startMs, 10)
}

// Encode renders the tile as JSON, its format on the topic.
func (t *Tile) Encode() ([]byte, error) { return t.AppendJSON(make([]byte, 0, 256)) }

// tileJSON is a tile as decoded: a feature is an IR or, as AppendJSON
// writes a feature sharing another's IR, that feature's name.
type tileJSON struct {
	View         string                     `json:"view"`
	Entity       string                     `json:"entity"`
	ResolutionMs int64                      `json:"res_ms"`
	StartMs      int64                      `json:"start_ms"`
	MaxEventMs   int64                      `json:"max_event_ms"`
	Features     map[string]json.RawMessage `json:"features"`
	Offsets      map[string]int64           `json:"offsets,omitempty"`
}

// Decode parses a tile and checks the fields readers rely on. Features
// written as another feature's name share that feature's IR.
func Decode(b []byte) (*Tile, error) {
	var j tileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("decode tile: %w", err)
	}
	t := Tile{View: j.View, Entity: j.Entity, ResolutionMs: j.ResolutionMs, StartMs: j.StartMs, MaxEventMs: j.MaxEventMs, Offsets: j.Offsets}
	if j.Features != nil {
		t.Features = make(map[string]*IR, len(j.Features))
		var aliases map[string]string
		for name, raw := range j.Features {
			if len(raw) > 0 && raw[0] == '"' {
				var to string
				if err := json.Unmarshal(raw, &to); err != nil {
					return nil, fmt.Errorf("decode tile %s: feature %s: %w", t.View, name, err)
				}
				if aliases == nil {
					aliases = map[string]string{}
				}
				aliases[name] = to
				continue
			}
			var ir *IR
			if err := json.Unmarshal(raw, &ir); err != nil {
				return nil, fmt.Errorf("decode tile %s: feature %s: %w", t.View, name, err)
			}
			t.Features[name] = ir
		}
		for name, to := range aliases {
			ir, ok := t.Features[to]
			if _, chained := aliases[to]; chained || !ok || ir == nil {
				return nil, fmt.Errorf("decode tile %s: feature %s shares the state of %q, which holds none", t.View, name, to)
			}
			t.Features[name] = ir
		}
	}
	switch {
	case t.View == "":
		return nil, fmt.Errorf("decode tile: view is empty")
	case t.Entity == "":
		return nil, fmt.Errorf("decode tile %s: entity is empty", t.View)
	case t.ResolutionMs < 0 || (t.ResolutionMs > 0 && t.StartMs%t.ResolutionMs != 0):
		return nil, fmt.Errorf("decode tile %s: start %d is not aligned to resolution %d", t.View, t.StartMs, t.ResolutionMs)
	}
	for name, ir := range t.Features {
		if ir == nil {
			return nil, fmt.Errorf("decode tile %s: feature %s has no state", t.View, name)
		}
	}
	return &t, nil
}

// IR is the mergeable intermediate representation of one feature in one tile.
type IR struct {
	// Count counts events; NumCount those whose value was numeric.
	Count    int64   `json:"n"`
	NumCount int64   `json:"nn,omitempty"`
	Sum      float64 `json:"sum,omitempty"`
	SumSq    float64 `json:"sq,omitempty"`
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	First    any     `json:"first,omitempty"`
	FirstMs  int64   `json:"first_ms,omitempty"`
	// FirstPos is the source position of First, which breaks ties of
	// event time (see Pos); absent (zero) in tiles written before it.
	FirstPos Pos   `json:"first_pos,omitzero"`
	Last     any   `json:"last,omitempty"`
	LastMs   int64 `json:"last_ms,omitempty"`
	LastPos  Pos   `json:"last_pos,omitzero"`
	// Distinct and Quantiles are kept only for the aggregations that need
	// them (approx_distinct; p50, p90, p95, p99), see Observe.
	Distinct  *Distinct  `json:"dc,omitempty"`
	Quantiles *Quantiles `json:"q,omitempty"`
}

// Pos is an event's source position, which orders events of equal event
// time for first, last and latest: for a CDC change {commit LSN of its
// transaction, its own LSN} (Debezium's source.sequence), so of rows one
// transaction wrote at one now() the last written wins, and of two
// transactions the later committed; for any other record (JSON sources,
// snapshot rows) {0, partition offset}, so within a partition the later
// record wins. The zero position (tiles written before positions, callers
// that have none) ties with itself, and then the later arrival wins.
type Pos [2]uint64

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool {
	if p[0] != q[0] {
		return p[0] < q[0]
	}
	return p[1] < q[1]
}

// after reports whether an event at (ms, pos) replaces one at (ms0, pos0)
// as the last: later event time, or the same and a position not before
// (an equal one is a later arrival).
func after(ms int64, pos Pos, ms0 int64, pos0 Pos) bool {
	return ms > ms0 || ms == ms0 && !pos.Less(pos0)
}

// before reports whether an event at (ms, pos) replaces one at (ms0, pos0)
// as the first: earlier event time, or the same and an earlier position.
func before(ms int64, pos Pos, ms0 int64, pos0 Pos) bool {
	return ms < ms0 || ms == ms0 && pos.Less(pos0)
}

// Observe applies one event's value for a feature of aggregation agg: Add,
// plus the sketch agg needs.
func (ir *IR) Observe(agg string, v any, tsMs int64) { ir.ObserveValue(agg, ValueOf(v), tsMs) }

// Value is an event's column value with its number reading (Number) done
// once, for the several IRs one event updates.
type Value struct {
	V     any
	Num   float64
	IsNum bool
}

// ValueOf reads v's number once.
func ValueOf(v any) Value {
	x, ok := Number(v)
	return Value{V: v, Num: x, IsNum: ok}
}

// ObserveValue is Observe of a value read by ValueOf.
func (ir *IR) ObserveValue(agg string, v Value, tsMs int64) { ir.ObserveValueAt(agg, v, tsMs, Pos{}) }

// ObserveValueAt is ObserveValue of an event at source position pos.
func (ir *IR) ObserveValueAt(agg string, v Value, tsMs int64, pos Pos) {
	ir.AddValueAt(v, tsMs, pos)
	switch {
	case agg == featurespec.AggApproxDistinct:
		if ir.Distinct == nil {
			ir.Distinct = &Distinct{}
		}
		ir.Distinct.Add(v.V)
	case featurespec.IsQuantile(agg):
		if v.IsNum {
			if ir.Quantiles == nil {
				ir.Quantiles = &Quantiles{}
			}
			ir.Quantiles.Add(v.Num)
		}
	}
}

// Unobserve retracts a value observed before (see Retract). Quantiles are
// reversible; a distinct count keeps the value.
func (ir *IR) Unobserve(agg string, v any) { ir.UnobserveValue(agg, ValueOf(v)) }

// UnobserveValue is Unobserve of a value read by ValueOf.
func (ir *IR) UnobserveValue(agg string, v Value) {
	ir.RetractValue(v)
	if ir.Quantiles != nil && featurespec.IsQuantile(agg) && v.IsNum {
		ir.Quantiles.Retract(v.Num)
	}
}

// Add applies one event's value at tsMs (at no source position).
func (ir *IR) Add(v any, tsMs int64) { ir.AddValue(ValueOf(v), tsMs) }

// AddValue is Add of a value read by ValueOf.
func (ir *IR) AddValue(v Value, tsMs int64) { ir.AddValueAt(v, tsMs, Pos{}) }

// AddValueAt is AddValue of an event at source position pos, which breaks
// ties of event time for first and last (see Pos).
func (ir *IR) AddValueAt(v Value, tsMs int64, pos Pos) {
	ir.Count++
	if x := v.Num; v.IsNum {
		if ir.NumCount == 0 || x < ir.Min {
			ir.Min = x
		}
		if ir.NumCount == 0 || x > ir.Max {
			ir.Max = x
		}
		ir.NumCount++
		ir.Sum += x
		ir.SumSq += x * x
	}
	if v.V == nil {
		return
	}
	if ir.First == nil || before(tsMs, pos, ir.FirstMs, ir.FirstPos) {
		ir.First, ir.FirstMs, ir.FirstPos = v.V, tsMs, pos
	}
	if ir.Last == nil || after(tsMs, pos, ir.LastMs, ir.LastPos) {
		ir.Last, ir.LastMs, ir.LastPos = v.V, tsMs, pos
	}
}

// Retract removes a value added before, for reversible aggregations (count,
// sum, avg, stddev). Min, max, first and last are not reversible: they keep
// the retracted value until the tile expires.
func (ir *IR) Retract(v any) { ir.RetractValue(ValueOf(v)) }

// RetractValue is Retract of a value read by ValueOf.
func (ir *IR) RetractValue(v Value) {
	ir.Count--
	if v.IsNum {
		ir.NumCount--
		ir.Sum -= v.Num
		ir.SumSq -= v.Num * v.Num
	}
}

// Merge folds o into ir.
func (ir *IR) Merge(o *IR) {
	if o.NumCount > 0 {
		if ir.NumCount == 0 || o.Min < ir.Min {
			ir.Min = o.Min
		}
		if ir.NumCount == 0 || o.Max > ir.Max {
			ir.Max = o.Max
		}
	}
	ir.Count += o.Count
	ir.NumCount += o.NumCount
	ir.Sum += o.Sum
	ir.SumSq += o.SumSq
	if o.First != nil && (ir.First == nil || before(o.FirstMs, o.FirstPos, ir.FirstMs, ir.FirstPos)) {
		ir.First, ir.FirstMs, ir.FirstPos = o.First, o.FirstMs, o.FirstPos
	}
	if o.Last != nil && (ir.Last == nil || after(o.LastMs, o.LastPos, ir.LastMs, ir.LastPos)) {
		ir.Last, ir.LastMs, ir.LastPos = o.Last, o.LastMs, o.LastPos
	}
	if o.Distinct != nil {
		if ir.Distinct == nil {
			ir.Distinct = &Distinct{}
		}
		ir.Distinct.Merge(o.Distinct)
	}
	if o.Quantiles != nil {
		if ir.Quantiles == nil {
			ir.Quantiles = &Quantiles{}
		}
		ir.Quantiles.Merge(o.Quantiles)
	}
}

// Value is the aggregation's result; ok is false when there is none (for
// example the average of no values). Count and sum of nothing are 0.
func (ir *IR) Value(agg string) (v any, ok bool) {
	switch agg {
	case featurespec.AggCount:
		return float64(ir.Count), true
	case featurespec.AggSum:
		return ir.Sum, true
	case featurespec.AggAvg:
		if ir.NumCount == 0 {
			return nil, false
		}
		return ir.Sum / float64(ir.NumCount), true
	case featurespec.AggMin:
		return ir.Min, ir.NumCount > 0
	case featurespec.AggMax:
		return ir.Max, ir.NumCount > 0
	case featurespec.AggStddev:
		if ir.NumCount == 0 {
			return nil, false
		}
		n := float64(ir.NumCount)
		mean := ir.Sum / n
		return math.Sqrt(math.Max(0, ir.SumSq/n-mean*mean)), true
	case featurespec.AggFirst:
		return ir.First, ir.First != nil
	case featurespec.AggLast, featurespec.AggLatest:
		return ir.Last, ir.Last != nil
	case featurespec.AggApproxDistinct:
		return ir.Distinct.Estimate(), true
	}
	if p, ok := featurespec.QuantileOf(agg); ok {
		if ir.Quantiles == nil {
			return nil, false
		}
		q, ok := ir.Quantiles.Quantile(p)
		if !ok {
			return nil, false
		}
		return q, true
	}
	return nil, false
}

// Number converts a JSON or Debezium value to a float: numbers, and numeric
// strings (Debezium renders numeric/decimal columns as strings).
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		if !mayBeNumber(x) {
			return 0, false
		}
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// mayBeNumber rejects, without the allocation of a ParseFloat error, the
// strings ParseFloat cannot parse to a finite number because of a byte no
// such number has or a first byte none starts with (ids, timestamps, words;
// inf and nan, which Number refuses anyway); the rest go to ParseFloat.
func mayBeNumber(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if i == len(s) || !(s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		return false
	}
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c == '.', c == '+', c == '-', c == '_':
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			// Exponents, hex digits and prefixes, inf, infinity, nan.
			switch c | 0x20 {
			case 'a', 'b', 'c', 'd', 'e', 'f', 'x', 'p', 'i', 'n', 't', 'y':
			default:
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Window merges a feature over the sawtooth window ending at nowMs from tiles
// of one entity and the feature's resolution. Tiles outside the window are
// ignored, so callers may pass every stored tile of that resolution. It
// returns the merged state and the newest event time that contributed.
func Window(ts []*Tile, f featurespec.Feature, nowMs int64) (IR, int64) {
	var out IR
	var newest int64
	res := ResolutionOf(f)
	from := StartOf(nowMs-time.Duration(f.Window).Milliseconds(), res)
	for _, t := range ts {
		if t.ResolutionMs != res.Milliseconds() {
			continue
		}
		if res > 0 && (t.StartMs < from || t.StartMs > nowMs) {
			continue
		}
		ir, ok := t.Features[f.Name]
		if !ok {
			continue
		}
		out.Merge(ir)
		if t.MaxEventMs > newest {
			newest = t.MaxEventMs
		}
	}
	return out, newest
}
