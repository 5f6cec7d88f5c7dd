// Package predlog defines the records on the `predictions` and `labels`
// topics, shared by the modelserver (which writes predictions) and the
// metrics service (which aggregates them and joins labels).
package predlog

// Topic names.
const (
	PredictionsTopic = "predictions"
	LabelsTopic      = "labels"
)

// Roles of a logged prediction.
const (
	RoleServed = "served"
	RoleCanary = "canary"
	RoleShadow = "shadow"
)

// Prediction is one logged prediction, keyed on the topic by PredictionID.
type Prediction struct {
	PredictionID string `json:"prediction_id"`
	Model        string `json:"model"`
	Version      string `json:"version"`
	Variant      string `json:"variant"`
	// Role is served, canary or shadow (shadow results are never returned to callers).
	Role string `json:"role"`
	// ParentID is, on a shadow prediction, the id of the prediction
	// returned to the caller for the same request row. Labels carry the
	// id the caller got, so a label for ParentID is a label for its shadow
	// predictions too (the metrics service joins it to both).
	ParentID   string            `json:"parent_id,omitempty"`
	EntityKeys map[string]string `json:"entity_keys,omitempty"`
	// Features are the model inputs as used, after defaults.
	Features map[string]float64 `json:"features,omitempty"`
	// Defaulted names the inputs that took the declared default (missing, stale or timed out).
	Defaulted []string           `json:"defaulted,omitempty"`
	Outputs   map[string]float64 `json:"outputs,omitempty"`
	// Score is the model's primary output, the one drift and quality use.
	Score     float64 `json:"score"`
	LatencyMs float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
	TraceID   string  `json:"trace_id,omitempty"`
	// TimeMs is when the prediction was made, in Unix milliseconds.
	TimeMs int64 `json:"ts_ms"`
}

// Label is the observed outcome of a prediction, arriving later on `labels`.
type Label struct {
	PredictionID string `json:"prediction_id"`
	// Value is the observed outcome, 1 for the positive class.
	Value float64 `json:"label"`
	// TimeMs is when the outcome was observed, in Unix milliseconds.
	TimeMs int64 `json:"ts_ms"`
}
