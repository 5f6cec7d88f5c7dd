package model

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseConfigNamesTheBadField(t *testing.T) {
	t.Parallel()
	const good = `
name: m
format: logistic
inputs:
  - {name: a, feature: "v:a", default: 1, transform: {type: standardize, mean: 1, std: 2}}
  - {name: b, source: request}
outputs: [score]
`
	if _, err := ParseConfig([]byte(good)); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad name", "name: 'a b'\nformat: logistic\ninputs: [{name: a, source: request}]", "name:"},
		{"unknown format", "name: m\nformat: onnx\ninputs: [{name: a, source: request}]", "format:"},
		{"no inputs", "name: m\nformat: logistic", "inputs:"},
		{"input without source", "name: m\nformat: logistic\ninputs: [{name: a}]", "inputs[0] (a)"},
		{"bad feature ref", "name: m\nformat: logistic\ninputs: [{name: a, feature: nocolon}]", "inputs[0] (a).feature"},
		{"duplicate input", "name: m\nformat: logistic\ninputs: [{name: a, source: request}, {name: a, source: request}]", "inputs[1] (a).name"},
		{"zero std", "name: m\nformat: logistic\ninputs: [{name: a, source: request, transform: {type: standardize, std: 0}}]", "inputs[0] (a).transform.std"},
		{"unknown transform", "name: m\nformat: logistic\ninputs: [{name: a, source: request, transform: {type: sqrt}}]", "inputs[0] (a).transform.type"},
		{"onehot without value", "name: m\nformat: logistic\ninputs: [{name: a, source: request, transform: {type: onehot}}]", "inputs[0] (a).transform.value"},
		{"label without threshold", "name: m\nformat: logistic\ninputs: [{name: a, source: request}]\noutputs: [score, label]", "outputs[1]"},
		{"unknown output", "name: m\nformat: logistic\ninputs: [{name: a, source: request}]\noutputs: [score, proba]", "outputs[1]"},
		{"unknown field", "name: m\nformat: logistic\ninputs: [{name: a, source: request, defualt: 1}]", "defualt"},
		{"bad timeout", "name: m\nformat: logistic\nfeature_timeout: soon\ninputs: [{name: a, source: request}]", "duration"},
		{"two policies", "name: m\nformat: logistic\nversion_policy: {latest: 2, all: true}\ninputs: [{name: a, source: request}]", "version_policy"},
		{"experiment without weight", "name: m\nformat: logistic\ninputs: [{name: a, source: request}]\nexperiment: {variants: [{name: x, version: 1}]}", "experiment.variants"},
		{"duplicate variant", "name: m\nformat: logistic\ninputs: [{name: a, source: request}]\nexperiment: {variants: [{name: x, weight: 1}, {name: x, weight: 1}]}", "experiment.variants[1].name"},
		{"ensemble without section", "name: m\nformat: ensemble", "ensemble:"},
		{"ensemble of itself", "name: m\nformat: ensemble\nensemble: {combine: average, members: [{model: m, weight: 1}]}", "ensemble.members[0].model"},
		{"bad combine", "name: m\nformat: ensemble\nensemble: {combine: vote, members: [{model: a, weight: 1}]}", "ensemble.combine"},
		{"remote without addr", "name: m\nformat: remote\ninputs: [{name: a, source: request}]", "remote.addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestTransforms(t *testing.T) {
	t.Parallel()
	lo, hi := 0.0, 10.0
	for _, tc := range []struct {
		name string
		in   Input
		raw  Raw
		want float64
	}{
		{"none", Input{}, Num(3), 3},
		{"standardize", Input{Transform: &Transform{Type: TransformStandardize, Mean: 1.2, Std: 0.8}}, Num(3), (3 - 1.2) / 0.8},
		{"log1p", Input{Transform: &Transform{Type: TransformLog1p}}, Num(120), math.Log1p(120)},
		{"clip high", Input{Transform: &Transform{Type: TransformClip, Min: &lo, Max: &hi}}, Num(12), 10},
		{"clip low", Input{Transform: &Transform{Type: TransformClip, Min: &lo, Max: &hi}}, Num(-1), 0},
		{"onehot hit", Input{Transform: &Transform{Type: TransformOneHot, Value: "US"}}, Str("US"), 1},
		{"onehot miss", Input{Transform: &Transform{Type: TransformOneHot, Value: "US"}}, Str("DE"), 0},
		{"onehot number", Input{Transform: &Transform{Type: TransformOneHot, Value: "3"}}, Num(3), 1},
		{"numeric string", Input{}, Str("2.5"), 2.5},
	} {
		got, err := tc.in.Apply(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("%s: Apply(%v) = %v, %v; want %v", tc.name, tc.raw, got, err, tc.want)
		}
	}
	if _, err := (&Input{}).Apply(Str("x")); err != ErrNotNumeric {
		t.Errorf("string to numeric input: %v, want ErrNotNumeric", err)
	}
	in := Input{Default: 3, Transform: &Transform{Type: TransformStandardize, Mean: 1, Std: 2}}
	if got := in.ApplyDefault(); got != 1 {
		t.Errorf("default goes through the transform: %v, want 1", got)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLinearAndEnsembleScores(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := &Config{Name: "m", Format: "logistic", Inputs: []Input{{Name: "a"}, {Name: "b"}}}
	writeFile(t, filepath.Join(dir, "model.json"), `{"weights": {"a": 2, "b": -1}, "bias": 0.5}`)
	s, err := LoadLinear(true)(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 2)
	if err := s.Score(context.Background(), []float64{1, 2, 0, 0}, 2, out); err != nil {
		t.Fatal(err)
	}
	if want := []float64{Sigmoid(0.5 + 2 - 2), Sigmoid(0.5)}; out[0] != want[0] || out[1] != want[1] {
		t.Errorf("logistic scores %v, want %v", out, want)
	}
	writeFile(t, filepath.Join(dir, "model.json"), `{"weights": {"c": 2}, "bias": 0}`)
	if _, err := LoadLinear(true)(cfg, dir); err == nil || !strings.Contains(err.Error(), "weights.c") {
		t.Errorf("weight for no input: %v, want an error naming weights.c", err)
	}

	ens := &Config{Name: "e", Format: "ensemble", Ensemble: &Ensemble{Combine: "average", Members: []Member{{Name: "x", Weight: 3}, {Name: "y", Weight: 1}}}}
	edir := t.TempDir()
	c, err := LoadEnsemble(ens, edir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Score(context.Background(), []float64{0.2, 0.6}, 2, out[:1]); err != nil || math.Abs(out[0]-(3*0.2+0.6)/4) > 1e-12 {
		t.Errorf("weighted average %v %v, want %v", out[0], err, (3*0.2+0.6)/4)
	}
	ens.Ensemble.Combine = "stacking"
	if _, err := LoadEnsemble(ens, edir); err == nil {
		t.Error("stacking without model.json loaded")
	}
	writeFile(t, filepath.Join(edir, "model.json"), `{"weights": {"x": 1.5, "y": 2.5}, "bias": -1}`)
	c, err = LoadEnsemble(ens, edir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Score(context.Background(), []float64{0.2, 0.6}, 2, out[:1]); err != nil || math.Abs(out[0]-Sigmoid(-1+1.5*0.2+2.5*0.6)) > 1e-12 {
		t.Errorf("stacking %v %v", out[0], err)
	}
}

type xgbReference struct {
	Inputs      []string     `json:"inputs"`
	Rows        [][]*float64 `json:"rows"`
	Predictions []float64    `json:"predictions"`
}

func loadXGBFixture(t testing.TB) (*XGBoost, xgbReference) {
	t.Helper()
	var ref xgbReference
	b, err := os.ReadFile("testdata/xgb_fraud/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	// Inputs in another order than the model's features: the evaluator maps by name.
	cfg := &Config{Name: "xgb"}
	for i := len(ref.Inputs) - 1; i >= 0; i-- {
		cfg.Inputs = append(cfg.Inputs, Input{Name: ref.Inputs[i], Source: SourceRequest})
	}
	s, err := LoadXGBoost(cfg, "testdata/xgb_fraud")
	if err != nil {
		t.Fatal(err)
	}
	return s.(*XGBoost), ref
}

// TestXGBoostMatchesXGBoost compares the evaluator with predictions XGBoost
// itself made (testdata/gen_xgboost.py), missing values included.
func TestXGBoostMatchesXGBoost(t *testing.T) {
	t.Parallel()
	m, ref := loadXGBFixture(t)
	if m.Trees() != 100 {
		t.Fatalf("trees = %d, want 100", m.Trees())
	}
	w := len(ref.Inputs)
	x := make([]float64, len(ref.Rows)*w)
	for r, row := range ref.Rows {
		for j, v := range row {
			val := math.NaN()
			if v != nil {
				val = *v
			}
			x[r*w+(w-1-j)] = val // reversed input order, as in the config
		}
	}
	out := make([]float64, len(ref.Rows))
	if err := m.Score(context.Background(), x, w, out); err != nil {
		t.Fatal(err)
	}
	for i, want := range ref.Predictions {
		// XGBoost predicts in float32.
		if math.Abs(out[i]-want) > 2e-6 {
			t.Errorf("row %d: %v, XGBoost says %v", i, out[i], want)
		}
	}
}

func TestXGBoostRefusesBrokenModels(t *testing.T) {
	t.Parallel()
	cfg := &Config{Name: "x", Inputs: []Input{{Name: "a"}}}
	for _, tc := range []struct{ name, json, want string }{
		{"not json", "{", "unexpected end"},
		{"gblinear", `{"learner": {"gradient_booster": {"name": "gblinear"}}}`, "gradient_booster.name"},
		{"objective", `{"learner": {"gradient_booster": {"name": "gbtree"}, "objective": {"name": "rank:pairwise"}}}`, "objective.name"},
		{"feature name", `{"learner": {"feature_names": ["zz"], "gradient_booster": {"name": "gbtree"}, "objective": {"name": "binary:logistic"},
		  "learner_model_param": {"base_score": "5E-1", "num_feature": "1"}}}`, "feature_names[0]"},
		{"child out of range", `{"learner": {"gradient_booster": {"name": "gbtree", "model": {"trees": [{"left_children": [5, -1], "right_children": [1, -1],
		  "split_indices": [0, 0], "split_conditions": [1, 0.5], "default_left": [0, 0]}]}}, "objective": {"name": "binary:logistic"},
		  "learner_model_param": {"base_score": "5E-1", "num_feature": "1"}}}`, "child index"},
	} {
		if _, err := ParseXGBoost([]byte(tc.json), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// leavesTestdata finds the testdata shipped in the leaves module: LightGBM
// models with predictions LightGBM itself made. LightGBM cannot be installed
// here, so these are the reference predictions for the LightGBM format.
func leavesTestdata(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/dmitryikh/leaves").Output()
	if err != nil {
		t.Fatalf("locate the leaves module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "testdata")
}

func readTSV(t *testing.T, path string) [][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]float64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var row []float64
		for _, s := range strings.Fields(sc.Text()) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return rows
}

func TestLightGBMMatchesLightGBM(t *testing.T) {
	t.Parallel()
	td := leavesTestdata(t)
	src, err := os.ReadFile(filepath.Join(td, "lg_dart_breast_cancer.model"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "model.txt"), string(src))
	features := readTSV(t, filepath.Join(td, "breast_cancer_test.tsv"))
	var truth []float64
	for _, r := range readTSV(t, filepath.Join(td, "lg_dart_breast_cancer_true_predictions.txt")) {
		truth = append(truth, r[0])
	}
	w := len(features[0])
	cfg := &Config{Name: "lgb", Format: "lightgbm"}
	for i := range w {
		cfg.Inputs = append(cfg.Inputs, Input{Name: "f" + strconv.Itoa(i), Source: SourceRequest})
	}
	s, err := LoadLightGBM(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float64, 0, len(features)*w)
	for _, r := range features {
		x = append(x, r...)
	}
	out := make([]float64, len(features))
	if err := s.Score(context.Background(), x, w, out); err != nil {
		t.Fatal(err)
	}
	for i, want := range truth {
		if math.Abs(out[i]-want) > 1e-9 {
			t.Errorf("row %d: %v, LightGBM says %v", i, out[i], want)
		}
	}
	writeFile(t, filepath.Join(dir, "model.txt"), "tree\nversion=v9\n")
	if _, err := LoadLightGBM(cfg, dir); err == nil {
		t.Error("a broken LightGBM model loaded")
	}
}

// BenchmarkXGBoost100Trees is tree evaluation per row of a 100-tree, depth-5 model.
func BenchmarkXGBoost100Trees(b *testing.B) {
	m, ref := loadXGBFixture(b)
	w := len(ref.Inputs)
	rows := len(ref.Rows) - 20 // rows without missing values
	x := make([]float64, rows*w)
	for r := range rows {
		for j, v := range ref.Rows[r+20] {
			x[r*w+(w-1-j)] = *v
		}
	}
	out := make([]float64, rows)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = m.Score(context.Background(), x, w, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("name: m\nformat: logistic\ninputs: [{name: a, source: request}]"))
	f.Add([]byte("name: e\nformat: ensemble\nensemble: {combine: average, members: [{model: a, weight: 1}]}"))
	f.Add([]byte("name: m\nformat: logistic\ninputs: [{name: a, feature: 'v:a', transform: {type: clip, min: 1, max: 0}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
	})
}

func FuzzParseXGBoost(f *testing.F) {
	// Small seeds: the 300 KB test model makes each mutation too slow to explore.
	f.Add([]byte(`{"learner": {"gradient_booster": {"name": "gbtree", "model": {"trees": [{"left_children": [1, -1, -1], "right_children": [2, -1, -1],
	  "split_indices": [0, 0, 0], "split_conditions": [1, 0.5, -0.5], "default_left": [1, 0, 0]}]}}, "objective": {"name": "binary:logistic"},
	  "learner_model_param": {"base_score": "5E-1", "num_feature": "1"}}}`))
	f.Add([]byte(`{"learner": {"feature_names": ["amount"], "gradient_booster": {"name": "gbtree", "model": {"trees": [{"left_children": [1, -1, 3, -1, -1],
	  "right_children": [2, -1, 4, -1, -1], "split_indices": [0, 0, 0, 0, 0], "split_conditions": [1, 0.5, 3, -0.5, 0.25], "default_left": [1, 0, 0, 0, 0],
	  "split_type": [0, 0, 0, 0, 0]}]}}, "objective": {"name": "reg:squarederror"}, "learner_model_param": {"base_score": "[1E0]", "num_feature": "1"}}}`))
	cfg := &Config{Name: "x", Inputs: []Input{{Name: "txn_count_10m"}, {Name: "txn_sum_1h"}, {Name: "country_us"}, {Name: "amount"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseXGBoost(data, cfg)
		if err != nil {
			return
		}
		// A model that loads must evaluate without panicking or looping.
		out := make([]float64, 1)
		_ = m.Score(context.Background(), []float64{1, 2, 3, 4}, 4, out)
	})
}
