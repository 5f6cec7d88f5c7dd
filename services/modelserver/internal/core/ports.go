package core

import (
	"context"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// FeatureStore is the featureserver as the core sees it.
type FeatureStore interface {
	// GetOnlineFeatures fetches refs ("view:feature") for every entity row in
	// one call; the answer has one slice per row with one value per ref.
	GetOnlineFeatures(ctx context.Context, refs []string, rows []map[string]string) ([][]Fetched, error)
	// JoinKeys returns the join keys of each named view.
	JoinKeys(ctx context.Context, views []string) (map[string][]string, error)
}

// Fetched is one fetched feature value; Present is false for missing and stale values.
type Fetched struct {
	Value   model.Raw
	Present bool
}

// PredictionLog takes prediction records; Log must never block.
type PredictionLog interface {
	Log(ctx context.Context, p *predlog.Prediction)
}

// Models gives the models served now.
type Models interface {
	Snapshot() *model.Set
}

// EnsembleWeights gives the current member weights of an adaptive ensemble;
// nil keeps the configured weights.
type EnsembleWeights interface {
	Weights(ensemble string) []float64
}
