package tiles

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/tributary-ml/tributary/libs/jsonenc"
	"github.com/tributary-ml/tributary/libs/quantile"
)

// AppendJSON appends the tile's JSON to b: the document json.Marshal
// writes, field for field, except that a feature sharing its IR (the same
// pointer) with a feature named before it is written as that feature's
// name, a JSON string ("txn_sum_1h":"txn_avg_10m"), which Decode resolves
// (the featurizer keeps one state for the features of a column that need
// the same one: a fraud-view tile shrinks 4 to 7 times). It is the
// featurizer's hot path: every flush encodes every changed tile, and
// reflection-based encoding of the feature map cost more than aggregating
// the events.
func (t *Tile) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"view":`...)
	b = appendString(b, t.View)
	b = append(b, `,"entity":`...)
	b = appendString(b, t.Entity)
	b = append(b, `,"res_ms":`...)
	b = strconv.AppendInt(b, t.ResolutionMs, 10)
	b = append(b, `,"start_ms":`...)
	b = strconv.AppendInt(b, t.StartMs, 10)
	b = append(b, `,"max_event_ms":`...)
	b = strconv.AppendInt(b, t.MaxEventMs, 10)
	b = append(b, `,"features":`...)
	if t.Features == nil {
		b = append(b, "null"...)
	} else {
		var nameBuf [32]string
		names := nameBuf[:0]
		for n := range t.Features {
			names = append(names, n)
		}
		slices.Sort(names)
		// Features may share one IR: encode it once, under the first
		// name, and refer to that name after.
		type written struct {
			ir   *IR
			name string
		}
		var doneBuf [16]written
		done := doneBuf[:0]
		b = append(b, '{')
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
			b = append(b, ':')
			ir := t.Features[n]
			alias := ""
			for _, w := range done {
				if w.ir == ir && ir != nil {
					alias = w.name
					break
				}
			}
			if alias != "" {
				b = appendString(b, alias)
				continue
			}
			var err error
			if b, err = ir.appendJSON(b); err != nil {
				return nil, fmt.Errorf("feature %s: %w", n, err)
			}
			done = append(done, written{ir, n})
		}
		b = append(b, '}')
	}
	if len(t.Offsets) > 0 {
		srcs := make([]string, 0, len(t.Offsets))
		for s := range t.Offsets {
			srcs = append(srcs, s)
		}
		slices.Sort(srcs)
		b = append(b, `,"offsets":{`...)
		for i, s := range srcs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
			b = append(b, ':')
			b = strconv.AppendInt(b, t.Offsets[s], 10)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func (ir *IR) appendJSON(b []byte) ([]byte, error) {
	if ir == nil {
		return append(b, "null"...), nil
	}
	var err error
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, ir.Count, 10)
	if ir.NumCount != 0 {
		b = append(b, `,"nn":`...)
		b = strconv.AppendInt(b, ir.NumCount, 10)
	}
	for _, f := range [...]struct {
		key string
		v   float64
	}{{`,"sum":`, ir.Sum}, {`,"sq":`, ir.SumSq}, {`,"min":`, ir.Min}, {`,"max":`, ir.Max}} {
		if f.v != 0 {
			b = append(b, f.key...)
			if b, err = appendFloat(b, f.v); err != nil {
				return nil, err
			}
		}
	}
	if ir.First != nil {
		b = append(b, `,"first":`...)
		if b, err = appendAny(b, ir.First); err != nil {
			return nil, err
		}
	}
	if ir.FirstMs != 0 {
		b = append(b, `,"first_ms":`...)
		b = strconv.AppendInt(b, ir.FirstMs, 10)
	}
	if ir.FirstPos != (Pos{}) {
		b = ir.FirstPos.appendJSON(append(b, `,"first_pos":`...))
	}
	if ir.Last != nil {
		b = append(b, `,"last":`...)
		if b, err = appendAny(b, ir.Last); err != nil {
			return nil, err
		}
	}
	if ir.LastMs != 0 {
		b = append(b, `,"last_ms":`...)
		b = strconv.AppendInt(b, ir.LastMs, 10)
	}
	if ir.LastPos != (Pos{}) {
		b = ir.LastPos.appendJSON(append(b, `,"last_pos":`...))
	}
	if ir.Distinct != nil {
		b = append(b, `,"dc":`...)
		b = ir.Distinct.appendJSON(b)
	}
	if q := ir.Quantiles; q != nil {
		b = append(b, `,"q":{`...)
		sep := false
		for _, m := range [...]struct {
			key string
			m   map[int32]int64
		}{{`"p":{`, q.Pos}, {`"m":{`, q.Neg}} {
			if len(m.m) == 0 {
				continue
			}
			if sep {
				b = append(b, ',')
			}
			sep = true
			b = append(b, m.key...)
			for i, k := range quantile.SortedBuckets(m.m) {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = strconv.AppendInt(b, int64(k), 10)
				b = append(b, '"', ':')
				b = strconv.AppendInt(b, m.m[k], 10)
			}
			b = append(b, '}')
		}
		if q.Zero != 0 {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"z":`...)
			b = strconv.AppendInt(b, q.Zero, 10)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func (p Pos) appendJSON(b []byte) []byte {
	b = append(b, '[')
	b = strconv.AppendUint(b, p[0], 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, p[1], 10)
	return append(b, ']')
}

func appendAny(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return appendString(b, x), nil
	case float64:
		return appendFloat(b, x)
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		return append(b, x...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

// appendFloat writes f as encoding/json does.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("unsupported value %v", f)
	}
	abs := math.Abs(f)
	fmtc := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmtc = 'e'
	}
	b = strconv.AppendFloat(b, f, fmtc, -1, 64)
	if fmtc == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendString writes s as a JSON string, escaping like encoding/json
// (including <, > and &).
func appendString(b []byte, s string) []byte { return jsonenc.AppendString(b, s, true) }
