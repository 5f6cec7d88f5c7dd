package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Topic is the compacted topic rows travel on to Pinot.
const Topic = "metrics.model_minute"

// MinuteMs is a minute in milliseconds.
const MinuteMs = 60_000

// MinuteOf aligns a Unix millisecond time down to its minute.
func MinuteOf(ms int64) int64 {
	m := ms / MinuteMs * MinuteMs
	if m > ms {
		m -= MinuteMs
	}
	return m
}

// ModelKey names one model, version and variant.
type ModelKey struct {
	Model, Version, Variant string
}

// Key names one row: a model, version and variant in one minute.
type Key struct {
	ModelKey
	// Minute is the Unix millisecond start of the minute.
	Minute int64
}

// PK is the row's key on the topic and its Pinot primary key:
// model|version|variant|minute-ms.
func (k Key) PK() string {
	return k.Model + "|" + k.Version + "|" + k.Variant + "|" + strconv.FormatInt(k.Minute, 10)
}

// Row is one published per-minute row: its key, derived figures and the
// mergeable state they were derived from.
type Row struct {
	Key
	Metrics
	State *State
}

// NewRow derives a row from a state.
func NewRow(k Key, s *State, info ModelInfo) Row {
	return Row{Key: k, Metrics: s.Derive(info), State: s}
}

// Columns are the row's columns on the topic and in Pinot. The first
// seventeen are the contract of DESIGN.md; the rest are additions.
func Columns() []string {
	return []string{
		"model", "version", "variant", "pk", "minute",
		"requests", "errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
		"score_mean", "score_psi", "accuracy", "labeled",
		"score_histogram", "feature_psi", "feature_default_rate",
		"score_js", "feature_js", "precision", "recall", "log_loss", "auc", "calibration_error", "state",
		"revision",
	}
}

// wire is a row as JSON on metrics.model_minute: map- and list-valued
// figures are JSON held in strings, as Pinot stores them.
type wire struct {
	Model              string  `json:"model"`
	Version            string  `json:"version"`
	Variant            string  `json:"variant"`
	PK                 string  `json:"pk"`
	Minute             int64   `json:"minute"`
	Requests           int64   `json:"requests"`
	Errors             int64   `json:"errors"`
	LatencyP50Ms       float64 `json:"latency_p50_ms"`
	LatencyP95Ms       float64 `json:"latency_p95_ms"`
	LatencyP99Ms       float64 `json:"latency_p99_ms"`
	ScoreMean          float64 `json:"score_mean"`
	ScorePSI           float64 `json:"score_psi"`
	Accuracy           float64 `json:"accuracy"`
	Labeled            int64   `json:"labeled"`
	ScoreHistogram     string  `json:"score_histogram"`
	FeaturePSI         string  `json:"feature_psi"`
	FeatureDefaultRate string  `json:"feature_default_rate"`
	ScoreJS            float64 `json:"score_js"`
	FeatureJS          string  `json:"feature_js"`
	Precision          float64 `json:"precision"`
	Recall             float64 `json:"recall"`
	LogLoss            float64 `json:"log_loss"`
	AUC                float64 `json:"auc"`
	CalibrationError   float64 `json:"calibration_error"`
	State              string  `json:"state"`
	// Revision grows with every publication of a row (see Row.Revision):
	// Pinot's upsert compares it so the latest state of a pk wins.
	Revision int64 `json:"revision"`
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func finiteMap(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = finite(v)
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only finite numbers, strings and slices reach here.
		return "null"
	}
	return string(b)
}

func (r Row) toWire() wire {
	hist := r.ScoreHistogram
	if hist == nil {
		hist = make([]int64, HistogramBins)
	}
	state := ""
	if r.State != nil {
		state = mustJSON(r.State)
	}
	return wire{
		Model: r.Model, Version: r.Version, Variant: r.Variant, PK: r.PK(), Minute: r.Minute,
		Requests: r.Requests, Errors: r.Errors,
		LatencyP50Ms: finite(r.LatencyP50Ms), LatencyP95Ms: finite(r.LatencyP95Ms), LatencyP99Ms: finite(r.LatencyP99Ms),
		ScoreMean: finite(r.ScoreMean), ScorePSI: finite(r.ScorePSI), Accuracy: finite(r.Accuracy), Labeled: r.Labeled,
		ScoreHistogram:     mustJSON(hist),
		FeaturePSI:         mustJSON(finiteMap(r.FeaturePSI)),
		FeatureDefaultRate: mustJSON(finiteMap(r.FeatureDefaultRate)),
		ScoreJS:            finite(r.ScoreJS),
		FeatureJS:          mustJSON(finiteMap(r.FeatureJS)),
		Precision:          finite(r.Precision), Recall: finite(r.Recall), LogLoss: finite(r.LogLoss),
		AUC: finite(r.AUC), CalibrationError: finite(r.CalibrationError),
		State:    state,
		Revision: r.Revision(),
	}
}

// Revision is the row's publication order within its key: requests plus
// labels, since a row is published only after one of them grew. Pinot's
// upsert uses it as the comparison column (every version of a row has the
// same minute, so the time column cannot order them).
func (r Row) Revision() int64 { return r.Requests + r.Labeled }

// Marshal encodes the row as it travels on metrics.model_minute.
func (r Row) Marshal() ([]byte, error) {
	return json.Marshal(r.toWire())
}

// UnmarshalRow decodes a row from metrics.model_minute (or a Pinot result
// turned into the same JSON object) and checks it.
func UnmarshalRow(b []byte) (Row, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Row{}, fmt.Errorf("decode row: %w", err)
	}
	return w.row()
}

func (w wire) row() (Row, error) {
	r := Row{
		Key: Key{ModelKey: ModelKey{Model: w.Model, Version: w.Version, Variant: w.Variant}, Minute: w.Minute},
		Metrics: Metrics{
			Requests: w.Requests, Errors: w.Errors,
			LatencyP50Ms: w.LatencyP50Ms, LatencyP95Ms: w.LatencyP95Ms, LatencyP99Ms: w.LatencyP99Ms,
			ScoreMean: w.ScoreMean, ScorePSI: w.ScorePSI, ScoreJS: w.ScoreJS,
			Labeled: w.Labeled, Accuracy: w.Accuracy, Precision: w.Precision, Recall: w.Recall,
			LogLoss: w.LogLoss, AUC: w.AUC, CalibrationError: w.CalibrationError,
		},
	}
	if r.Model == "" {
		return Row{}, errors.New("row: model is empty")
	}
	if strings.Contains(r.Model, "|") || strings.Contains(r.Version, "|") || strings.Contains(r.Variant, "|") {
		return Row{}, errors.New("row: model, version or variant contains '|'")
	}
	if r.Minute != MinuteOf(r.Minute) {
		return Row{}, fmt.Errorf("row: minute %d is not aligned to a minute", r.Minute)
	}
	if w.PK != "" && w.PK != r.PK() {
		return Row{}, fmt.Errorf("row: pk %q does not match its columns (%q)", w.PK, r.PK())
	}
	if err := decodeString(w.ScoreHistogram, &r.ScoreHistogram); err != nil {
		return Row{}, fmt.Errorf("row: score_histogram: %w", err)
	}
	if r.ScoreHistogram != nil && len(r.ScoreHistogram) != HistogramBins {
		return Row{}, fmt.Errorf("row: score_histogram: %d bins, want %d", len(r.ScoreHistogram), HistogramBins)
	}
	for name, dst := range map[string]*map[string]float64{
		"feature_psi": &r.FeaturePSI, "feature_default_rate": &r.FeatureDefaultRate, "feature_js": &r.FeatureJS,
	} {
		if err := decodeString(w.fieldString(name), dst); err != nil {
			return Row{}, fmt.Errorf("row: %s: %w", name, err)
		}
	}
	if w.State != "" {
		s := new(State)
		if err := json.Unmarshal([]byte(w.State), s); err != nil {
			return Row{}, fmt.Errorf("row: state: %w", err)
		}
		if err := s.Validate(); err != nil {
			return Row{}, fmt.Errorf("row: %w", err)
		}
		s.upgrade()
		r.State = s
	}
	return r, nil
}

func (w wire) fieldString(name string) string {
	switch name {
	case "feature_psi":
		return w.FeaturePSI
	case "feature_default_rate":
		return w.FeatureDefaultRate
	default:
		return w.FeatureJS
	}
}

func decodeString(s string, dst any) error {
	if s == "" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), dst)
}
