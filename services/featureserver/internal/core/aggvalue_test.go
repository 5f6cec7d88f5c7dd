package core

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// TestNumericValueMatchesIRValue: for every numeric aggregation and
// random states (empty, NaN, infinities, negative zero, huge counts), the
// unboxed value is bit for bit what tiles.IR.Value gives.
func TestNumericValueMatchesIRValue(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	floats := []float64{0, math.Copysign(0, -1), 1, -2.5, 1e300, -1e-300, math.NaN(), math.Inf(1), math.Inf(-1)}
	f := func() float64 {
		if rng.IntN(3) == 0 {
			return floats[rng.IntN(len(floats))]
		}
		return rng.NormFloat64() * 1e3
	}
	counts := []int64{0, 1, 2, 7, math.MaxInt64}
	aggs := []string{featurespec.AggCount, featurespec.AggSum, featurespec.AggAvg, featurespec.AggMin, featurespec.AggMax, featurespec.AggStddev}
	for range 20_000 {
		ir := &tiles.IR{Count: counts[rng.IntN(len(counts))], NumCount: counts[rng.IntN(len(counts))], Sum: f(), SumSq: f(), Min: f(), Max: f()}
		for _, agg := range aggs {
			kind := aggOf(agg)
			got := Value{Str: "stale"}
			if !numericValue(&got, ir, kind) {
				t.Fatalf("%s: not computed", agg)
			}
			var want Value
			if raw, found := ir.Value(agg); found {
				want = toValue(raw)
			}
			if got.Kind != want.Kind || math.Float64bits(got.Double) != math.Float64bits(want.Double) || got.Str != "" {
				t.Fatalf("%s of %+v: %+v, want %+v", agg, ir, got, want)
			}
		}
	}
	for _, agg := range []string{featurespec.AggFirst, featurespec.AggLast, featurespec.AggLatest, featurespec.AggApproxDistinct, "p50"} {
		if numericValue(&Value{}, &tiles.IR{Count: 1}, aggOf(agg)) {
			t.Fatalf("%s computed without tiles.IR.Value", agg)
		}
	}
}
