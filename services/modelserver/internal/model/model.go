package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Scorer evaluates a model version on a batch.
type Scorer interface {
	// Score writes one score per row into out. x is row-major with width
	// columns (the model's inputs in config order); len(out) rows.
	Score(ctx context.Context, x []float64, width int, out []float64) error
}

// Loader builds the scorer of one version from its directory.
type Loader func(cfg *Config, dir string) (Scorer, error)

// Loaders returns the loaders of the formats evaluated in this package.
func Loaders() map[string]Loader {
	return map[string]Loader{
		"logistic": LoadLinear(true),
		"linear":   LoadLinear(false),
		"xgboost":  LoadXGBoost,
		"lightgbm": LoadLightGBM,
		"ensemble": LoadEnsemble,
	}
}

// Sigmoid is the logistic function.
func Sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// Linear is a linear or logistic model.
type Linear struct {
	W        []float64
	Bias     float64
	Logistic bool
}

type linearFile struct {
	Weights map[string]float64 `json:"weights"`
	Bias    float64            `json:"bias"`
}

// LoadLinear loads model.json ({"weights": {"<input>": w}, "bias": b}).
func LoadLinear(logistic bool) Loader {
	return func(cfg *Config, dir string) (Scorer, error) {
		path := filepath.Join(dir, "model.json")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var f linearFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if f.Weights == nil {
			return nil, fmt.Errorf("%s: weights: missing", path)
		}
		m := &Linear{W: make([]float64, len(cfg.Inputs)), Bias: f.Bias, Logistic: logistic}
		idx := map[string]int{}
		for i, in := range cfg.Inputs {
			idx[in.Name] = i
		}
		for name, w := range f.Weights {
			i, ok := idx[name]
			if !ok {
				return nil, fmt.Errorf("%s: weights.%s: no input of that name in config.yaml", path, name)
			}
			if math.IsNaN(w) || math.IsInf(w, 0) {
				return nil, fmt.Errorf("%s: weights.%s: not finite", path, name)
			}
			m.W[i] = w
		}
		if math.IsNaN(f.Bias) || math.IsInf(f.Bias, 0) {
			return nil, fmt.Errorf("%s: bias: not finite", path)
		}
		return m, nil
	}
}

// Score implements Scorer.
func (m *Linear) Score(_ context.Context, x []float64, width int, out []float64) error {
	if width != len(m.W) {
		return fmt.Errorf("linear model has %d weights, got %d inputs", len(m.W), width)
	}
	for r := range out {
		row := x[r*width : (r+1)*width]
		z := m.Bias
		for i, w := range m.W {
			z += w * row[i]
		}
		if m.Logistic {
			z = Sigmoid(z)
		}
		out[r] = z
	}
	return nil
}

// Combiner combines ensemble member scores; its inputs are the member scores in member order.
type Combiner struct {
	W        []float64
	Bias     float64
	Stacking bool
	sum      float64
}

// LoadEnsemble loads an ensemble version: average needs no file (weights come
// from config.yaml; a model.json may override them); stacking reads a
// logistic meta-model {"weights": {"<member>": w}, "bias": b} from model.json.
func LoadEnsemble(cfg *Config, dir string) (Scorer, error) {
	e := cfg.Ensemble
	c := &Combiner{W: make([]float64, len(e.Members)), Stacking: e.Combine == "stacking"}
	idx := map[string]int{}
	for i, m := range e.Members {
		c.W[i] = m.Weight
		idx[m.Name] = i
	}
	path := filepath.Join(dir, "model.json")
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !c.Stacking:
	case err != nil:
		return nil, err
	default:
		var f linearFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for name, w := range f.Weights {
			i, ok := idx[name]
			if !ok {
				return nil, fmt.Errorf("%s: weights.%s: no ensemble member of that name", path, name)
			}
			c.W[i] = w
		}
		c.Bias = f.Bias
	}
	for _, w := range c.W {
		c.sum += w
	}
	if !c.Stacking && !(c.sum > 0) {
		return nil, fmt.Errorf("%s: member weights must add up to more than 0", dir)
	}
	return c, nil
}

// Score implements Scorer.
func (c *Combiner) Score(_ context.Context, x []float64, width int, out []float64) error {
	if width != len(c.W) {
		return fmt.Errorf("ensemble has %d members, got %d scores", len(c.W), width)
	}
	for r := range out {
		row := x[r*width : (r+1)*width]
		z := 0.0
		for i, w := range c.W {
			z += w * row[i]
		}
		if c.Stacking {
			out[r] = Sigmoid(c.Bias + z)
		} else {
			out[r] = z / c.sum
		}
	}
	return nil
}
