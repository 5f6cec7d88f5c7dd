package grpcapi

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// TestEncodeKeepsEveryValue checks the reference encoder: it encodes rows of random values whose event
// times repeat (more distinct times per row than the encoder remembers,
// so it also reuses and forgets shared Timestamps) and checks every value,
// status and event time against the core's.
func TestEncodeKeepsEveryValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := range 200 {
		rows, cols := 1+rng.IntN(4), 1+rng.IntN(40)
		times := 1 + rng.IntN(12)
		res := &core.Result{Rows: rows, Cols: cols, Values: make([]core.Value, rows*cols)}
		for i := range res.Values {
			v := core.Value{Kind: core.Kind(rng.IntN(5)), Status: core.StatusPresent}
			switch v.Kind {
			case core.KindNone:
				v.Status = core.StatusNotFound
			case core.KindDouble:
				v.Double = rng.Float64()
			case core.KindInt64:
				v.Int = rng.Int64()
			case core.KindString:
				v.Str = string(rune('a' + rng.IntN(26)))
			case core.KindBool:
				v.Bool = rng.IntN(2) == 1
			}
			if v.Kind != core.KindNone && rng.IntN(5) > 0 {
				v.EventMs = 1_700_000_000_000 + int64(rng.IntN(times))*1_234
			}
			res.Values[i] = v
		}
		vecs := referenceEncode(res)
		if len(vecs) != rows {
			t.Fatalf("round %d: %d vectors, want %d", round, len(vecs), rows)
		}
		for r, vec := range vecs {
			if len(vec.GetValues()) != cols {
				t.Fatalf("round %d row %d: %d values, want %d", round, r, len(vec.GetValues()), cols)
			}
			for c, fv := range vec.GetValues() {
				want := res.Values[r*cols+c]
				if fv.GetStatus() != featuresv1.FeatureStatus(want.Status) {
					t.Fatalf("round %d [%d,%d]: status %s, want %d", round, r, c, fv.GetStatus(), want.Status)
				}
				if got := fv.GetEventTime(); (want.EventMs == 0) != (got == nil) || (got != nil && got.AsTime().UnixMilli() != want.EventMs) {
					t.Fatalf("round %d [%d,%d]: event time %v, want %d ms", round, r, c, got, want.EventMs)
				}
				val := fv.GetValue()
				ok := false
				switch want.Kind {
				case core.KindNone:
					ok = val == nil
				case core.KindDouble:
					ok = val.GetDoubleValue() == want.Double
				case core.KindInt64:
					ok = val.GetInt64Value() == want.Int
				case core.KindString:
					ok = val.GetStringValue() == want.Str
				case core.KindBool:
					_, isBool := val.GetKind().(*featuresv1.Value_BoolValue)
					ok = isBool && val.GetBoolValue() == want.Bool
				}
				if !ok {
					t.Fatalf("round %d [%d,%d]: value %v, want %+v", round, r, c, val, want)
				}
			}
		}
	}
}

// referenceEncode is the encoder the server used before it wrote wire
// bytes itself, kept as the reference the wire encoder must agree with. It
// builds the response vectors with a handful of allocations: the
// messages of each kind are allocated together and pointed into, and the
// values of a row with the same event time share one Timestamp (the
// features of one window have the newest event of that window), which
// marshals the same as separate copies.
func referenceEncode(res *core.Result) []*featuresv1.FeatureVector {
	n := len(res.Values)
	var nd, ni, ns, nb, nts int
	var seen eventTimes
	for i := range res.Values {
		v := &res.Values[i]
		if i%res.Cols == 0 {
			seen.reset()
		}
		switch v.Kind {
		case core.KindDouble:
			nd++
		case core.KindInt64:
			ni++
		case core.KindString:
			ns++
		case core.KindBool:
			nb++
		}
		if _, ok := seen.find(v.EventMs); v.EventMs > 0 && !ok {
			seen.add(v.EventMs, nil)
			nts++
		}
	}
	vecs := make([]featuresv1.FeatureVector, res.Rows)
	vecPtrs := make([]*featuresv1.FeatureVector, res.Rows)
	fvs := make([]featuresv1.FeatureValue, n)
	fvPtrs := make([]*featuresv1.FeatureValue, n)
	vals := make([]featuresv1.Value, nd+ni+ns+nb)
	ds := make([]featuresv1.Value_DoubleValue, nd)
	is := make([]featuresv1.Value_Int64Value, ni)
	ss := make([]featuresv1.Value_StringValue, ns)
	bs := make([]featuresv1.Value_BoolValue, nb)
	tss := make([]timestamppb.Timestamp, nts)
	var iv, id, ii, is2, ib, its int
	for i := range res.Values {
		v := &res.Values[i]
		if i%res.Cols == 0 {
			seen.reset()
		}
		fv := &fvs[i]
		fvPtrs[i] = fv
		fv.Status = featuresv1.FeatureStatus(v.Status)
		if v.Kind != core.KindNone {
			val := &vals[iv]
			iv++
			switch v.Kind {
			case core.KindDouble:
				ds[id].DoubleValue = v.Double
				val.Kind = &ds[id]
				id++
			case core.KindInt64:
				is[ii].Int64Value = v.Int
				val.Kind = &is[ii]
				ii++
			case core.KindString:
				ss[is2].StringValue = v.Str
				val.Kind = &ss[is2]
				is2++
			case core.KindBool:
				bs[ib].BoolValue = v.Bool
				val.Kind = &bs[ib]
				ib++
			}
			fv.Value = val
		}
		if v.EventMs > 0 {
			// The same finds and adds as when counting, so exactly nts
			// Timestamps are taken.
			ts, ok := seen.find(v.EventMs)
			if !ok {
				ts = &tss[its]
				its++
				ts.Seconds = v.EventMs / 1000
				ts.Nanos = int32(v.EventMs%1000) * 1e6
				seen.add(v.EventMs, ts)
			}
			fv.EventTime = ts
		}
	}
	for r := range vecs {
		vecs[r].Values = fvPtrs[r*res.Cols : (r+1)*res.Cols : (r+1)*res.Cols]
		vecPtrs[r] = &vecs[r]
	}
	return vecPtrs
}

// eventTimes remembers the last few distinct event times of a row; a row
// with more distinct times than it holds just gets more Timestamps.
type eventTimes struct {
	ms   [8]int64
	ts   [8]*timestamppb.Timestamp
	n    int
	next int
}

func (e *eventTimes) reset() { e.n, e.next = 0, 0 }

// find returns the Timestamp remembered for ms.
func (e *eventTimes) find(ms int64) (*timestamppb.Timestamp, bool) {
	for i := range e.n {
		if e.ms[i] == ms {
			return e.ts[i], true
		}
	}
	return nil, false
}

func (e *eventTimes) add(ms int64, ts *timestamppb.Timestamp) {
	if e.n < len(e.ms) {
		e.ms[e.n], e.ts[e.n] = ms, ts
		e.n++
		return
	}
	e.ms[e.next], e.ts[e.next] = ms, ts
	e.next = (e.next + 1) % len(e.ms)
}
