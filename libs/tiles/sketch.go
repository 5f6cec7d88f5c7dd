package tiles

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"

	"github.com/tributary-ml/tributary/libs/quantile"
)

// Distinct is a mergeable approximate distinct counter: exact (a sorted set
// of 64-bit hashes) up to SparseLimit values, then a HyperLogLog with 2^11
// registers (standard error about 2.3%). Small sets, the common case per
// entity and tile, cost a few bytes; a large one 2 KiB. It is not
// reversible: a retracted value stays counted until its tile expires.
type Distinct struct {
	// Sparse holds the hashes while the set is small; nil once dense.
	Sparse []uint64
	// Regs are the HyperLogLog registers once dense.
	Regs []uint8
}

const (
	// SparseLimit is the largest set Distinct keeps exactly.
	SparseLimit = 128
	hllP        = 11
	hllM        = 1 << hllP
)

// hash64 hashes a value's text form: FNV-1a then a murmur3 finaliser so
// that the bits HyperLogLog reads are well mixed. It is stable across
// processes, which maphash is not.
func hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// DistinctKey is the text a value is counted by: strings as they are,
// numbers in their JSON text (so 7 and "7" count once, but 7 and 7.0 may
// not), booleans as true/false. Nil is not counted.
func DistinctKey(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return fmt.Sprint(v), true
}

// Add counts one value.
func (d *Distinct) Add(v any) {
	k, ok := DistinctKey(v)
	if !ok {
		return
	}
	d.addHash(hash64(k))
}

func (d *Distinct) addHash(h uint64) {
	if d.Regs == nil {
		i, found := slices.BinarySearch(d.Sparse, h)
		if found {
			return
		}
		if len(d.Sparse) < SparseLimit {
			d.Sparse = slices.Insert(d.Sparse, i, h)
			return
		}
		d.densify()
	}
	idx := h >> (64 - hllP)
	rank := uint8(bits.LeadingZeros64(h<<hllP|1<<(hllP-1)) + 1)
	if rank > d.Regs[idx] {
		d.Regs[idx] = rank
	}
}

func (d *Distinct) densify() {
	sp := d.Sparse
	d.Sparse = nil
	d.Regs = make([]uint8, hllM)
	for _, h := range sp {
		d.addHash(h)
	}
}

// Merge folds o into d.
func (d *Distinct) Merge(o *Distinct) {
	if o == nil {
		return
	}
	if o.Regs == nil {
		for _, h := range o.Sparse {
			d.addHash(h)
		}
		return
	}
	if d.Regs == nil {
		d.densify()
	}
	for i, r := range o.Regs {
		if r > d.Regs[i] {
			d.Regs[i] = r
		}
	}
}

// Estimate is the number of distinct values: exact while sparse, the
// HyperLogLog estimate with linear counting for small cardinalities after.
func (d *Distinct) Estimate() float64 {
	if d == nil {
		return 0
	}
	if d.Regs == nil {
		return float64(len(d.Sparse))
	}
	var sum float64
	zeros := 0
	for _, r := range d.Regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	m := float64(hllM)
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if est <= 2.5*m && zeros > 0 {
		est = m * math.Log(m/float64(zeros))
	}
	return math.Round(est)
}

type distinctJSON struct {
	Sparse []uint64 `json:"s,omitempty"`
	Regs   string   `json:"r,omitempty"`
}

// MarshalJSON writes the sparse hashes or the registers in base64.
func (d *Distinct) MarshalJSON() ([]byte, error) { return d.appendJSON(nil), nil }

// appendJSON appends what json.Marshal writes for distinctJSON (the
// tiles are encoded at every flush, reflection was most of their cost).
func (d *Distinct) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if len(d.Sparse) > 0 {
		b = append(b, `"s":[`...)
		for i, h := range d.Sparse {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, h, 10)
		}
		b = append(b, ']')
	}
	if len(d.Regs) > 0 {
		if len(d.Sparse) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"r":"`...)
		b = base64.StdEncoding.AppendEncode(b, d.Regs)
		b = append(b, '"')
	}
	return append(b, '}')
}

// UnmarshalJSON reads what MarshalJSON wrote and checks it.
func (d *Distinct) UnmarshalJSON(b []byte) error {
	var j distinctJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = Distinct{}
	if j.Regs != "" {
		regs, err := base64.StdEncoding.DecodeString(j.Regs)
		if err != nil {
			return fmt.Errorf("distinct registers: %w", err)
		}
		if len(regs) != hllM {
			return fmt.Errorf("distinct registers: %d, want %d", len(regs), hllM)
		}
		for _, r := range regs {
			if r > 64-hllP+1 {
				return fmt.Errorf("distinct register rank %d is out of range", r)
			}
		}
		d.Regs = regs
		return nil
	}
	if len(j.Sparse) > SparseLimit {
		return fmt.Errorf("distinct: %d sparse hashes, at most %d", len(j.Sparse), SparseLimit)
	}
	if !sort.SliceIsSorted(j.Sparse, func(a, b int) bool { return j.Sparse[a] < j.Sparse[b] }) {
		return errors.New("distinct: sparse hashes are not sorted")
	}
	d.Sparse = j.Sparse
	return nil
}

// Quantiles is the mergeable, retractable quantile sketch of quantile
// aggregations (libs/quantile; its JSON form {"p":…,"m":…,"z":…} is part
// of the tile format).
type Quantiles = quantile.Sketch

// QuantileAccuracy is the sketch's relative accuracy.
const QuantileAccuracy = quantile.Accuracy
