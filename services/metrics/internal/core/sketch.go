package core

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tributary-ml/tributary/libs/quantile"
)

// Sketch is a row's latency distribution in milliseconds: the shared
// quantile sketch (libs/quantile, relative error SketchAccuracy) with the
// row format's conventions: values at or below SketchMin (and NaN) count
// as zero, values above the top bucket (~1e9 ms) in the top bucket, and
// the JSON form {"o": first bucket, "c": counts from it, "z": zeros} that
// rows on metrics.model_minute have always had. Sketches merge by adding
// bucket counts, so per-minute sketches combine exactly into any range.
type Sketch struct{ q quantile.Sketch }

// SketchAccuracy is the sketch's relative accuracy.
const SketchAccuracy = quantile.Accuracy

// SketchMin is the smallest value told apart from zero (one microsecond).
const SketchMin = 1e-3

// maxSketchBuckets bounds a sketch's size (values above ~1e9 ms share the top bucket).
const maxSketchBuckets = 2048

var (
	sketchMinIndex = int(quantile.Bucket(SketchMin))
	sketchMaxIndex = sketchMinIndex + maxSketchBuckets - 1
)

// Add records one value. NaN and values at or below SketchMin count as zero.
func (s *Sketch) Add(v float64) {
	if !(v > SketchMin) {
		s.q.AddZero(1)
		return
	}
	s.q.AddBucket(min(quantile.Bucket(v), int32(sketchMaxIndex)), 1)
}

// Count is the number of values recorded.
func (s *Sketch) Count() int64 { return s.q.Count() }

// Merge adds o's values to s.
func (s *Sketch) Merge(o *Sketch) { s.q.Merge(&o.q) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1), or 0 for an empty sketch.
func (s *Sketch) Quantile(q float64) float64 {
	v, _ := s.q.Quantile(q)
	return v
}

// sketchJSON is the row format of a sketch.
type sketchJSON struct {
	// Offset is the bucket index of Counts[0].
	Offset int `json:"o"`
	// Counts are bucket counts from Offset upwards.
	Counts []int64 `json:"c"`
	// Zero counts values at or below SketchMin.
	Zero int64 `json:"z,omitempty"`
}

// MarshalJSON writes the row format: what encoding/json wrote for
// sketchJSON, without its reflection (rows are encoded at every flush).
func (s Sketch) MarshalJSON() ([]byte, error) {
	lo, hi, any := int32(0), int32(0), false
	for i := range s.q.Pos {
		if !any || i < lo {
			lo = i
		}
		if !any || i > hi {
			hi = i
		}
		any = true
	}
	b := make([]byte, 0, 32+8*int(hi-lo+1))
	b = append(b, `{"o":`...)
	if !any {
		b = append(b, `0,"c":null`...)
	} else {
		b = strconv.AppendInt(b, int64(lo), 10)
		b = append(b, `,"c":[`...)
		for i := lo; i <= hi; i++ {
			if i > lo {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, s.q.Pos[i], 10)
		}
		b = append(b, ']')
	}
	if s.q.Zero != 0 {
		b = append(b, `,"z":`...)
		b = strconv.AppendInt(b, s.q.Zero, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads the row format and checks it.
func (s *Sketch) UnmarshalJSON(b []byte) error {
	var j sketchJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if err := j.validate(); err != nil {
		return err
	}
	*s = Sketch{}
	s.q.AddZero(j.Zero)
	for k, c := range j.Counts {
		if c != 0 {
			s.q.AddBucket(int32(j.Offset+k), c)
		}
	}
	return nil
}

func (j *sketchJSON) validate() error {
	if len(j.Counts) > maxSketchBuckets {
		return fmt.Errorf("latency sketch: %d buckets, at most %d", len(j.Counts), maxSketchBuckets)
	}
	if len(j.Counts) > 0 && (j.Offset < sketchMinIndex || j.Offset+len(j.Counts) > sketchMinIndex+maxSketchBuckets) {
		return fmt.Errorf("latency sketch: offset %d outside [%d, %d)", j.Offset, sketchMinIndex, sketchMinIndex+maxSketchBuckets)
	}
	if j.Zero < 0 {
		return fmt.Errorf("latency sketch: negative zero count %d", j.Zero)
	}
	for k, c := range j.Counts {
		if c < 0 {
			return fmt.Errorf("latency sketch: negative count %d in bucket %d", c, j.Offset+k)
		}
	}
	return nil
}

// validate checks a sketch: decoding checked the row format, and Add and
// Merge keep buckets within [SketchMin, the top bucket].
func (s *Sketch) validate() error {
	for i, c := range s.q.Pos {
		if int(i) < sketchMinIndex || int(i) > sketchMaxIndex {
			return fmt.Errorf("latency sketch: bucket %d outside [%d, %d]", i, sketchMinIndex, sketchMaxIndex)
		}
		if c < 0 {
			return fmt.Errorf("latency sketch: negative count %d in bucket %d", c, i)
		}
	}
	if len(s.q.Neg) > 0 || s.q.Zero < 0 {
		return fmt.Errorf("latency sketch: negative values or zero count")
	}
	return nil
}
