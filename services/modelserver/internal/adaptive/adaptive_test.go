package adaptive

import (
	"math"
	"testing"
)

func TestShares(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q     []float64
		floor float64
		want  []float64
	}{
		{[]float64{0.4, 0.1}, 0.1, []float64{0.74, 0.26}},
		{[]float64{0.3, 0}, 0.05, []float64{0.95, 0.05}},
		{[]float64{0, 0, 0}, 0.1, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{[]float64{1, 1, 2}, 0, []float64{0.25, 0.25, 0.5}},
	} {
		got := Shares(tc.q, tc.floor)
		sum := 0.0
		for i := range got {
			sum += got[i]
			if math.Abs(got[i]-tc.want[i]) > 1e-12 {
				t.Errorf("Shares(%v, %v) = %v, want %v", tc.q, tc.floor, got, tc.want)
				break
			}
			if got[i] < tc.floor {
				t.Errorf("share %v below the floor %v", got[i], tc.floor)
			}
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("shares %v add up to %v", got, sum)
		}
	}
}
