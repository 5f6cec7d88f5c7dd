package core

import (
	"fmt"
	"math"
	"sort"
)

// PSIEpsilon replaces an empty bin's share in PSI and Jensen–Shannon, so a
// bin empty on one side adds a large but finite term instead of infinity.
const PSIEpsilon = 1e-4

// Bins is a binned training distribution: len(Edges) = len(Fractions)+1,
// edges strictly increasing. Values below the first edge count in the first
// bin, values above the last in the last bin.
type Bins struct {
	Edges     []float64 `json:"edges"`
	Fractions []float64 `json:"fractions"`
}

// Validate names what is wrong with b.
func (b Bins) Validate() error {
	if len(b.Fractions) == 0 {
		return fmt.Errorf("fractions: empty")
	}
	if len(b.Edges) != len(b.Fractions)+1 {
		return fmt.Errorf("edges: %d edges for %d fractions, want %d", len(b.Edges), len(b.Fractions), len(b.Fractions)+1)
	}
	for i := 1; i < len(b.Edges); i++ {
		if !(b.Edges[i] > b.Edges[i-1]) {
			return fmt.Errorf("edges: not strictly increasing at %d (%v after %v)", i, b.Edges[i], b.Edges[i-1])
		}
	}
	sum := 0.0
	for i, f := range b.Fractions {
		if f < 0 || math.IsNaN(f) {
			return fmt.Errorf("fractions[%d]: %v is not a share", i, f)
		}
		sum += f
	}
	if math.Abs(sum-1) > 1e-3 {
		return fmt.Errorf("fractions: sum %v, want 1", sum)
	}
	return nil
}

// Bin returns the bin v falls in.
func (b Bins) Bin(v float64) int {
	n := len(b.Fractions)
	// Edges[i] ≤ v < Edges[i+1] is bin i.
	i := sort.SearchFloat64s(b.Edges[1:n], v)
	if i < n-1 && b.Edges[i+1] == v {
		i++
	}
	return i
}

// Baseline is a model version's training distributions (baseline.json in the
// model repository).
type Baseline struct {
	Score    Bins            `json:"score"`
	Features map[string]Bins `json:"features"`
}

// Validate names the first bad distribution.
func (b *Baseline) Validate() error {
	if err := b.Score.Validate(); err != nil {
		return fmt.Errorf("score: %w", err)
	}
	names := make([]string, 0, len(b.Features))
	for n := range b.Features {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := b.Features[n].Validate(); err != nil {
			return fmt.Errorf("features.%s: %w", n, err)
		}
	}
	return nil
}

// ModelInfo is what the metrics need from the model repository about one
// model version. A nil Baseline means no drift is computed.
type ModelInfo struct {
	Baseline  *Baseline
	Threshold float64
}

// DefaultThreshold is the decision threshold when a model declares none.
const DefaultThreshold = 0.5

// shares turns counts into shares with empty bins at PSIEpsilon.
func shares(counts []int64) ([]float64, bool) {
	var n int64
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return nil, false
	}
	out := make([]float64, len(counts))
	for i, c := range counts {
		out[i] = math.Max(float64(c)/float64(n), PSIEpsilon)
	}
	return out, true
}

// PSI is the population stability index of observed counts against the
// expected fractions: Σ (a−e)·ln(a/e). ok is false without observations or
// when the bin counts differ.
func PSI(counts []int64, expected []float64) (psi float64, ok bool) {
	a, ok := shares(counts)
	if !ok || len(a) != len(expected) {
		return 0, false
	}
	for i := range a {
		e := math.Max(expected[i], PSIEpsilon)
		psi += (a[i] - e) * math.Log(a[i]/e)
	}
	return psi, true
}

// JS is the Jensen–Shannon divergence (base 2, so in [0, 1]) of observed
// counts and expected fractions.
func JS(counts []int64, expected []float64) (js float64, ok bool) {
	a, ok := shares(counts)
	if !ok || len(a) != len(expected) {
		return 0, false
	}
	for i := range a {
		e := math.Max(expected[i], PSIEpsilon)
		m := (a[i] + e) / 2
		js += 0.5*a[i]*math.Log2(a[i]/m) + 0.5*e*math.Log2(e/m)
	}
	return math.Max(js, 0), true
}
