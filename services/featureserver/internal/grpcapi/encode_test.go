package grpcapi

import (
	"math/rand/v2"
	"testing"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// TestEncodeKeepsEveryValue encodes rows of random values whose event
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
		vecs := encode(res)
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
