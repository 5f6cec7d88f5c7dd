package core

import (
	"fmt"
	"math"
)

// Sketch is a mergeable quantile sketch of positive values (latencies in
// milliseconds) with a relative error bound: values fall into logarithmic
// buckets of ratio Gamma, so any quantile it reports is within SketchAccuracy
// of a value of the stream's true quantile rank. Two sketches merge by adding
// bucket counts, so per-minute sketches combine exactly into any range.
type Sketch struct {
	// Offset is the bucket index of Counts[0].
	Offset int `json:"o"`
	// Counts are bucket counts from Offset upwards.
	Counts []int64 `json:"c"`
	// Zero counts values at or below SketchMin.
	Zero int64 `json:"z,omitempty"`
}

// SketchAccuracy is the sketch's relative accuracy.
const SketchAccuracy = 0.01

// SketchMin is the smallest value told apart from zero (one microsecond).
const SketchMin = 1e-3

// maxSketchBuckets bounds a sketch's size (values above ~1e9 ms share the top bucket).
const maxSketchBuckets = 2048

var (
	sketchGamma    = (1 + SketchAccuracy) / (1 - SketchAccuracy)
	sketchLogGamma = math.Log(sketchGamma)
	sketchMinIndex = sketchIndex(SketchMin)
)

func sketchIndex(v float64) int { return int(math.Ceil(math.Log(v) / sketchLogGamma)) }

// Add records one value. NaN and values at or below SketchMin count as zero.
func (s *Sketch) Add(v float64) {
	if !(v > SketchMin) {
		s.Zero++
		return
	}
	i := sketchIndex(v)
	if i > sketchMinIndex+maxSketchBuckets-1 {
		i = sketchMinIndex + maxSketchBuckets - 1
	}
	s.addAt(i, 1)
}

func (s *Sketch) addAt(i int, n int64) {
	switch {
	case len(s.Counts) == 0:
		s.Offset = i
		s.Counts = append(s.Counts[:0], n)
		return
	case i < s.Offset:
		grow := s.Offset - i
		c := make([]int64, len(s.Counts)+grow, len(s.Counts)+grow+16)
		copy(c[grow:], s.Counts)
		s.Counts, s.Offset = c, i
	case i >= s.Offset+len(s.Counts):
		for len(s.Counts) <= i-s.Offset {
			s.Counts = append(s.Counts, 0)
		}
	}
	s.Counts[i-s.Offset] += n
}

// Count is the number of values recorded.
func (s *Sketch) Count() int64 {
	n := s.Zero
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Merge adds o's values to s.
func (s *Sketch) Merge(o *Sketch) {
	s.Zero += o.Zero
	for j, c := range o.Counts {
		if c != 0 {
			s.addAt(o.Offset+j, c)
		}
	}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1), or 0 for an empty sketch.
func (s *Sketch) Quantile(q float64) float64 {
	n := s.Count()
	if n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := int64(q * float64(n-1))
	if rank < s.Zero {
		return 0
	}
	seen := s.Zero
	for j, c := range s.Counts {
		seen += c
		if seen > rank {
			// The bucket (γ^(i-1), γ^i] is represented by the point with
			// equal relative distance to both ends.
			return 2 * math.Pow(sketchGamma, float64(s.Offset+j)) / (sketchGamma + 1)
		}
	}
	return 2 * math.Pow(sketchGamma, float64(s.Offset+len(s.Counts)-1)) / (sketchGamma + 1)
}

// validate checks a decoded sketch.
func (s *Sketch) validate() error {
	if len(s.Counts) > maxSketchBuckets {
		return fmt.Errorf("latency sketch: %d buckets, at most %d", len(s.Counts), maxSketchBuckets)
	}
	if len(s.Counts) > 0 && (s.Offset < sketchMinIndex || s.Offset+len(s.Counts) > sketchMinIndex+maxSketchBuckets) {
		return fmt.Errorf("latency sketch: offset %d outside [%d, %d)", s.Offset, sketchMinIndex, sketchMinIndex+maxSketchBuckets)
	}
	if s.Zero < 0 {
		return fmt.Errorf("latency sketch: negative zero count %d", s.Zero)
	}
	for j, c := range s.Counts {
		if c < 0 {
			return fmt.Errorf("latency sketch: negative count %d in bucket %d", c, s.Offset+j)
		}
	}
	return nil
}
