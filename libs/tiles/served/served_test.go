package served

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
			kind := aggKindOf(agg)
			got := Value{Str: "stale"}
			if !numericValue(&got, ir, kind) {
				t.Fatalf("%s: not computed", agg)
			}
			var want Value
			if raw, found := ir.Value(agg); found {
				want = FromAny(raw)
			}
			if got.Kind != want.Kind || math.Float64bits(got.Double) != math.Float64bits(want.Double) || got.Str != "" {
				t.Fatalf("%s of %+v: %+v, want %+v", agg, ir, got, want)
			}
		}
	}
	for _, agg := range []string{featurespec.AggFirst, featurespec.AggLast, featurespec.AggLatest, featurespec.AggApproxDistinct, "p50"} {
		if numericValue(&Value{}, &tiles.IR{Count: 1}, aggKindOf(agg)) {
			t.Fatalf("%s computed without tiles.IR.Value", agg)
		}
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name             string
		now, win, res    int64
		wantFrom, wantTo int64
	}{
		{"aligned down", 1_000_000 + 7, 600_000, 300_000, 300_000, 1_000_007},
		{"on a boundary", 900_000, 600_000, 300_000, 300_000, 900_000},
		{"before the epoch", 100, 600_000, 300_000, -600_000, 100},
		{"latest", 5, 0, 0, 0, 5},
	} {
		from, to := Bounds(c.now, c.win, c.res)
		if from != c.wantFrom || to != c.wantTo {
			t.Errorf("%s: Bounds(%d, %d, %d) = [%d, %d], want [%d, %d]", c.name, c.now, c.win, c.res, from, to, c.wantFrom, c.wantTo)
		}
	}
}

func TestSetStatuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                   string
		ir                     tiles.IR
		agg                    string
		newest, entity, maxAge int64
		want                   Value
	}{
		{"present", tiles.IR{Count: 2}, featurespec.AggCount, 900, 950, 500, Value{Kind: KindDouble, Double: 2, Status: StatusPresent, EventMs: 900}},
		{"stale", tiles.IR{Count: 2}, featurespec.AggCount, 400, 950, 500, Value{Kind: KindDouble, Double: 2, Status: StatusStale, EventMs: 400}},
		{"decayed count takes the entity's newest", tiles.IR{}, featurespec.AggCount, 0, 950, 500, Value{Kind: KindDouble, Status: StatusPresent, EventMs: 950}},
		{"avg of nothing", tiles.IR{}, featurespec.AggAvg, 0, 950, 0, NotFound},
		{"last of nothing", tiles.IR{}, featurespec.AggLast, 0, 950, 0, NotFound},
		{"string", tiles.IR{Last: "x"}, featurespec.AggLatest, 800, 800, 0, Value{Kind: KindString, Str: "x", Status: StatusPresent, EventMs: 800}},
	}
	for _, c := range cases {
		var v Value
		Set(&v, &c.ir, c.newest, c.entity, AggOf(c.agg), c.maxAge, 1000)
		if v != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, v, c.want)
		}
	}
}
