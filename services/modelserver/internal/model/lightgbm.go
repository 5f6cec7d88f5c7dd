package model

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/dmitryikh/leaves"
)

// LightGBM evaluates a LightGBM text model (model.txt) through
// github.com/dmitryikh/leaves, with the objective's transformation (sigmoid
// for binary) applied.
type LightGBM struct {
	e *leaves.Ensemble
}

// LoadLightGBM loads <version>/model.txt written by LightGBM's save_model.
// leaves reads model format versions v2 and v3 (LightGBM up to 3.x).
func LoadLightGBM(cfg *Config, dir string) (Scorer, error) {
	path := filepath.Join(dir, "model.txt")
	e, err := leaves.LGEnsembleFromFile(path, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if e.NOutputGroups() != 1 {
		return nil, fmt.Errorf("%s: %d output groups; only single-output models are supported", path, e.NOutputGroups())
	}
	if e.NFeatures() > len(cfg.Inputs) {
		return nil, fmt.Errorf("%s: model has %d features, config.yaml has %d inputs", path, e.NFeatures(), len(cfg.Inputs))
	}
	return &LightGBM{e: e}, nil
}

// Score implements Scorer.
func (m *LightGBM) Score(_ context.Context, x []float64, width int, out []float64) error {
	nf := m.e.NFeatures()
	for r := range out {
		out[r] = m.e.PredictSingle(x[r*width:r*width+nf], 0)
	}
	return nil
}
