package modelrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// TestExampleRepository reads the trained example model the demo serves.
func TestExampleRepository(t *testing.T) {
	r := New("../../../../../examples/fraud/models", nil)
	info := r.Model("fraud_lr", "1")
	if info.Baseline == nil {
		t.Fatal("no baseline for fraud_lr/1")
	}
	if info.Threshold != 0.5 {
		t.Errorf("threshold %v, want 0.5 from config.yaml", info.Threshold)
	}
	for _, f := range []string{"amount", "txn_count_10m", "click_count_10m"} {
		if _, ok := info.Baseline.Features[f]; !ok {
			t.Errorf("baseline lacks input %s", f)
		}
	}
	if len(info.Baseline.Score.Fractions) == 0 {
		t.Error("baseline has no score distribution")
	}
}

func write(t *testing.T, dir, path, body string) {
	t.Helper()
	p := filepath.Join(dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// config is a minimal valid config.yaml (libs/modelrepo checks it whole).
func config(name, threshold string) string {
	return "name: " + name + "\nformat: logistic\ninputs:\n  - {name: x, source: request}\nthreshold: " + threshold + "\n"
}

func TestMissingAndInvalidFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "m/config.yaml", config("m", "0.7"))
	write(t, dir, "m/2/config.yaml", config("m", "0.9"))
	write(t, dir, "m/2/baseline.json", `{"score": {"edges": [0, 1], "fractions": [1]}}`)
	write(t, dir, "bad/1/baseline.json", `{"score": {"edges": [0, 1], "fractions": [0.5]}}`)
	write(t, dir, "bad/config.yaml", config("bad", "7"))
	r := New(dir, nil)
	for _, tc := range []struct {
		model, version string
		threshold      float64
		baseline       bool
	}{
		{"m", "1", 0.7, false},                     // model-level config, no baseline
		{"m", "2", 0.9, true},                      // version-level config wins
		{"bad", "1", core.DefaultThreshold, false}, // invalid files: defaults, logged
		{"none", "1", core.DefaultThreshold, false},
		{"../m", "2", core.DefaultThreshold, false}, // never leaves the repository
	} {
		info := r.Model(tc.model, tc.version)
		if info.Threshold != tc.threshold || (info.Baseline != nil) != tc.baseline {
			t.Errorf("%s/%s: threshold %v baseline %v, want %v %v", tc.model, tc.version, info.Threshold, info.Baseline != nil, tc.threshold, tc.baseline)
		}
	}
	if _, err := r.load("bad", "1"); err == nil || !strings.Contains(err.Error(), "threshold") || !strings.Contains(err.Error(), "fractions") {
		t.Errorf("load bad/1: %v, want errors naming threshold and fractions", err)
	}
}

func FuzzParseBaseline(f *testing.F) {
	b, err := os.ReadFile("../../../../../examples/fraud/models/fraud_lr/1/baseline.json")
	if err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"score": {"edges": [0, 0.5, 1], "fractions": [0.5, 0.5]}, "features": {"x": {"edges": [1, 2], "fractions": [1]}}}`))
	f.Add([]byte(`{"score": {"edges": [1, 0], "fractions": [1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		base, err := ParseBaseline(b)
		if err != nil {
			return
		}
		// A valid baseline bins any value and scores any counts.
		for _, v := range []float64{-1e308, 0, 0.5, 1, 1e308} {
			if i := base.Score.Bin(v); i < 0 || i >= len(base.Score.Fractions) {
				t.Fatalf("Bin(%v) = %d outside %d bins", v, i, len(base.Score.Fractions))
			}
		}
		s := core.NewState()
		s.Merge(s)
		s.Derive(core.ModelInfo{Baseline: base})
	})
}
