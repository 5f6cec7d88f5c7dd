// Package quantile is Tributary's one quantile sketch: mergeable and
// retractable, with a relative error bound (the DDSketch idea: logarithmic
// buckets of counts). The featurizer and featureserver keep it per tile
// for quantile aggregations (libs/tiles), the metrics service per minute
// for request latencies.
package quantile

import (
	"maps"
	"math"
	"slices"
)

// Sketch holds counts per bucket. A value x > 0 falls in bucket
// Bucket(x) = ceil(log_gamma(x)); negatives mirror it; magnitudes at or
// below MinMagnitude count as zero. Retracting a value decrements its
// bucket, so CDC updates and deletes correct quantiles exactly; two
// sketches merge by adding counts, so per-tile or per-minute sketches
// combine exactly into any range. The JSON form ({"p":…,"m":…,"z":…}) is
// the tile format's.
type Sketch struct {
	Pos  map[int32]int64 `json:"p,omitempty"`
	Neg  map[int32]int64 `json:"m,omitempty"`
	Zero int64           `json:"z,omitempty"`
}

// Accuracy is the sketch's relative accuracy: a quantile it reports is
// within Accuracy × |v| of a value v of the recorded set at that rank.
const Accuracy = 0.01

// MinMagnitude: smaller magnitudes count as zero.
const MinMagnitude = 1e-9

var (
	gamma    = (1 + Accuracy) / (1 - Accuracy)
	logGamma = math.Log(gamma)
)

// Bucket is the bucket of a magnitude x > MinMagnitude: (γ^(i-1), γ^i].
func Bucket(x float64) int32 { return int32(math.Ceil(math.Log(x) / logGamma)) }

// BucketValue is the value a bucket stands for: the point with equal
// relative distance to both of its ends.
func BucketValue(i int32) float64 { return 2 * math.Pow(gamma, float64(i)) / (gamma + 1) }

// Add records x (NaN and infinities are ignored).
func (q *Sketch) Add(x float64) { q.add(x, 1) }

// Retract removes one x recorded before.
func (q *Sketch) Retract(x float64) { q.add(x, -1) }

func (q *Sketch) add(x float64, n int64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	switch {
	case x > MinMagnitude:
		q.AddBucket(Bucket(x), n)
	case x < -MinMagnitude:
		bump(&q.Neg, Bucket(-x), n)
	default:
		q.AddZero(n)
	}
}

// AddBucket adds n (negative: retracts) to positive bucket i.
func (q *Sketch) AddBucket(i int32, n int64) { bump(&q.Pos, i, n) }

// AddZero adds n (negative: retracts) to the zero count.
func (q *Sketch) AddZero(n int64) {
	q.Zero += n
	if q.Zero < 0 {
		q.Zero = 0
	}
}

func bump(m *map[int32]int64, i int32, n int64) {
	if *m == nil {
		*m = map[int32]int64{}
	}
	(*m)[i] += n
	if (*m)[i] <= 0 {
		delete(*m, i)
	}
}

// Merge folds o into q.
func (q *Sketch) Merge(o *Sketch) {
	if o == nil {
		return
	}
	for i, c := range o.Pos {
		if q.Pos == nil {
			q.Pos = map[int32]int64{}
		}
		q.Pos[i] += c
	}
	for i, c := range o.Neg {
		if q.Neg == nil {
			q.Neg = map[int32]int64{}
		}
		q.Neg[i] += c
	}
	q.Zero += o.Zero
}

// Count is the number of values held.
func (q *Sketch) Count() int64 {
	if q == nil {
		return 0
	}
	n := q.Zero
	for _, c := range q.Pos {
		n += c
	}
	for _, c := range q.Neg {
		n += c
	}
	return n
}

// Quantile returns the value at rank p (0..1), within Accuracy relative
// error of a value of the recorded set; ok is false when empty.
func (q *Sketch) Quantile(p float64) (float64, bool) {
	n := q.Count()
	if n == 0 || math.IsNaN(p) {
		return 0, false
	}
	p = math.Min(1, math.Max(0, p))
	rank := int64(p * float64(n-1))
	neg := SortedBuckets(q.Neg)
	// Negatives from the most negative (largest index) up.
	var seen int64
	for i := len(neg) - 1; i >= 0; i-- {
		seen += q.Neg[neg[i]]
		if seen > rank {
			return -BucketValue(neg[i]), true
		}
	}
	seen += q.Zero
	if seen > rank {
		return 0, true
	}
	for _, i := range SortedBuckets(q.Pos) {
		seen += q.Pos[i]
		if seen > rank {
			return BucketValue(i), true
		}
	}
	return 0, false
}

// SortedBuckets lists a bucket map's indexes in increasing order.
func SortedBuckets(m map[int32]int64) []int32 { return slices.Sorted(maps.Keys(m)) }
