package quantile

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestQuantilesWithinAccuracy: over mixed-sign values, merged from parts
// and with some values retracted again, every quantile is within Accuracy
// of the exact one (computed by sorting what remains).
func TestQuantilesWithinAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var parts [4]Sketch
	var kept []float64
	for i := range 20000 {
		v := math.Exp(rng.NormFloat64()) * 5
		if i%5 == 0 {
			v = -v
		}
		if i%7 == 0 {
			v = 0
		}
		parts[i%4].Add(v)
		if i%10 == 3 {
			parts[i%4].Retract(v)
			continue
		}
		kept = append(kept, v)
	}
	var merged Sketch
	for i := range parts {
		merged.Merge(&parts[i])
	}
	if merged.Count() != int64(len(kept)) {
		t.Fatalf("count %d, want %d", merged.Count(), len(kept))
	}
	sort.Float64s(kept)
	for _, p := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 1} {
		want := kept[int(p*float64(len(kept)-1))]
		got, ok := merged.Quantile(p)
		if !ok || math.Abs(got-want) > Accuracy*math.Abs(want)*1.0001 {
			t.Errorf("p%v = %v, %v; want %v within %v", p, got, ok, want, Accuracy)
		}
	}
}

func TestEmptyNaNAndRetractBelowZero(t *testing.T) {
	var q Sketch
	if _, ok := q.Quantile(0.5); ok {
		t.Fatal("empty sketch has a quantile")
	}
	q.Add(math.NaN())
	q.Add(math.Inf(1))
	if q.Count() != 0 {
		t.Fatalf("NaN and +Inf counted: %d", q.Count())
	}
	q.Retract(0)
	q.Retract(3)
	if q.Count() != 0 || len(q.Pos) != 0 {
		t.Fatalf("retracting what was never added left %+v", q)
	}
	q.Add(3)
	if got, ok := q.Quantile(1); !ok || math.Abs(got-3) > 3*Accuracy {
		t.Fatalf("max of {3} = %v, %v", got, ok)
	}
}

func TestBucketValueLiesInItsBucket(t *testing.T) {
	for _, i := range []int32{-2000, -1, 0, 1, 500, 2000} {
		if got := Bucket(BucketValue(i)); got != i {
			t.Errorf("Bucket(BucketValue(%d)) = %d", i, got)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	var q Sketch
	vals := make([]float64, 1024)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range vals {
		vals[i] = math.Exp(rng.NormFloat64()) * 5
	}
	b.ResetTimer()
	for i := range b.N {
		q.Add(vals[i&1023])
	}
}
