package core

import (
	"fmt"
	"math"
	"sort"
)

// ScoreBins is the resolution of the score distributions kept by label
// (for AUC and calibration); the published histogram sums them into
// HistogramBins bins.
const ScoreBins = 100

// HistogramBins is the number of bins of the published score histogram over [0, 1].
const HistogramBins = 10

// State is the mergeable aggregate of one model, version and variant in one
// minute: everything a Row is derived from. It travels inside the row (the
// `state` column) so that rows merge exactly into ranges and the service
// restores itself from the compacted row topic.
type State struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Latency holds every request's latency, errors included.
	Latency Sketch `json:"latency"`
	// Scored counts predictions without error; scores, features and labels are about them.
	Scored int64 `json:"scored"`
	// ScoreSumNanos is the sum of the scores in units of 1e-9 (each score
	// rounded, clamped to ±1e6): like LogLossNanos, an integer sum gives the
	// same bits whatever order predictions arrive in, so the mean after a
	// restart equals the mean without one. Sums stay exact while their
	// magnitude is below 9.2e9 (nine billion scores in [0, 1] per row).
	ScoreSumNanos int64 `json:"score_sum_nanos"`
	// LegacyScoreSum is the float sum of rows written before
	// ScoreSumNanos existed; decoding moves it into ScoreSumNanos.
	LegacyScoreSum float64 `json:"score_sum,omitempty"`
	// Scores counts scores in ScoreBins equal bins over [0, 1] (clamped).
	Scores []int64 `json:"scores"`
	// Defaulted counts, per input seen, the predictions in which it took its default.
	Defaulted map[string]int64 `json:"defaulted,omitempty"`
	// BaselineScore and BaselineFeatures count values in the bins of the
	// model version's baseline (absent without a baseline).
	BaselineScore    []int64            `json:"baseline_score,omitempty"`
	BaselineFeatures map[string][]int64 `json:"baseline_features,omitempty"`

	// Labeled counts predictions whose label arrived.
	Labeled int64 `json:"labeled"`
	// Positives and Negatives count labeled scores by label, in ScoreBins bins.
	Positives []int64 `json:"positives,omitempty"`
	Negatives []int64 `json:"negatives,omitempty"`
	// TP, FP, TN, FN are the confusion matrix at the model's threshold.
	TP int64 `json:"tp"`
	FP int64 `json:"fp"`
	TN int64 `json:"tn"`
	FN int64 `json:"fn"`
	// LogLossNanos is the sum of the labeled predictions' log losses in
	// units of 1e-9: an integer sum does not depend on the order labels
	// arrive in, so a replay gives the same bits.
	LogLossNanos int64 `json:"log_loss_nanos"`

	// Offsets is, per input "topic/partition", the last offset handled when
	// this state was emitted: a redelivered record at or below it is already
	// counted here.
	Offsets map[string]int64 `json:"offsets,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Scores: make([]int64, ScoreBins)}
}

func scoreBin(s float64) int {
	if !(s > 0) { // NaN and ≤ 0
		return 0
	}
	i := int(s * ScoreBins)
	if i >= ScoreBins {
		i = ScoreBins - 1
	}
	return i
}

// logLossEps clamps probabilities in the log loss.
const logLossEps = 1e-15

// Feature is one model input of a prediction.
type Feature struct {
	Name  string
	Value float64
}

// Prediction is the part of a logged prediction the aggregate needs.
// Feature names are unique within a prediction.
type Prediction struct {
	// Parent is, for a shadow prediction, the id of the prediction
	// returned to the caller: labels carry that id, and count for the
	// shadow prediction too.
	Parent    string
	Failed    bool
	LatencyMs float64
	Score     float64
	Features  []Feature
	Defaulted []string
}

// FeaturesOf lists a feature map as the aggregate's input, in name order.
func FeaturesOf(m map[string]float64) []Feature {
	if len(m) == 0 {
		return nil
	}
	out := make([]Feature, 0, len(m))
	for _, n := range sortedKeys(m) {
		out = append(out, Feature{Name: n, Value: m[n]})
	}
	return out
}

// addScalars records what every prediction adds regardless of its
// features; it reports whether the prediction scored.
func (s *State) addScalars(p *Prediction) bool {
	s.Requests++
	s.Latency.Add(p.LatencyMs)
	if p.Failed {
		s.Errors++
		return false
	}
	s.Scored++
	s.ScoreSumNanos += scoreNanos(p.Score)
	s.Scores[scoreBin(p.Score)]++
	if s.Defaulted == nil && len(p.Features)+len(p.Defaulted) > 0 {
		s.Defaulted = make(map[string]int64, len(p.Features))
	}
	for _, name := range p.Defaulted {
		s.Defaulted[name]++
	}
	return true
}

// add records one prediction; base may be nil. It is the reference the
// aggregator's planned fold (entry.add) must match.
func (s *State) add(p *Prediction, base *Baseline) {
	if !s.addScalars(p) {
		return
	}
	for _, f := range p.Features {
		if _, ok := s.Defaulted[f.Name]; !ok {
			s.Defaulted[f.Name] = 0
		}
	}
	if base == nil {
		return
	}
	if s.BaselineScore == nil {
		s.BaselineScore = make([]int64, len(base.Score.Fractions))
	}
	s.BaselineScore[base.Score.Bin(p.Score)]++
	for _, f := range p.Features {
		bins, ok := base.Features[f.Name]
		if !ok {
			continue
		}
		s.featureCounts(f.Name, bins, len(base.Features))[bins.Bin(f.Value)]++
	}
}

// featureCounts returns the live baseline bin counts of feature name.
func (s *State) featureCounts(name string, bins Bins, features int) []int64 {
	if s.BaselineFeatures == nil {
		s.BaselineFeatures = make(map[string][]int64, features)
	}
	c := s.BaselineFeatures[name]
	if c == nil {
		c = make([]int64, len(bins.Fractions))
		s.BaselineFeatures[name] = c
	}
	return c
}

// addLabel records the label of a prediction of this state that scored score.
func (s *State) addLabel(score, label, threshold float64) {
	if s.Positives == nil {
		s.Positives = make([]int64, ScoreBins)
		s.Negatives = make([]int64, ScoreBins)
	}
	s.Labeled++
	pos := label >= 0.5
	predicted := score >= threshold
	p := math.Min(math.Max(score, logLossEps), 1-logLossEps)
	if pos {
		s.Positives[scoreBin(score)]++
		s.LogLossNanos += nanos(-math.Log(p))
		if predicted {
			s.TP++
		} else {
			s.FN++
		}
	} else {
		s.Negatives[scoreBin(score)]++
		s.LogLossNanos += nanos(-math.Log(1 - p))
		if predicted {
			s.FP++
		} else {
			s.TN++
		}
	}
}

func nanos(v float64) int64 { return int64(math.Round(v * 1e9)) }

// maxScore bounds a score's magnitude in the integer sum, so that sums of
// billions of scores stay within int64 and NaN or ±Inf cannot poison it.
const maxScore = 1e6

func scoreNanos(v float64) int64 {
	switch {
	case math.IsNaN(v):
		return 0
	case v > maxScore:
		v = maxScore
	case v < -maxScore:
		v = -maxScore
	}
	return nanos(v)
}

// upgrade moves fields of older encodings into the current ones.
func (s *State) upgrade() {
	if s.LegacyScoreSum != 0 {
		if s.ScoreSumNanos == 0 {
			s.ScoreSumNanos = scoreNanos(s.LegacyScoreSum)
		}
		s.LegacyScoreSum = 0
	}
}

func addCounts(dst, src []int64) []int64 {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = make([]int64, len(src))
	}
	if len(dst) != len(src) {
		return dst
	}
	for i, c := range src {
		dst[i] += c
	}
	return dst
}

// Merge adds o into s. Baseline bin counts merge only when they have the
// same shape (rows of one model version); offsets are not merged.
func (s *State) Merge(o *State) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	s.Latency.Merge(&o.Latency)
	s.Scored += o.Scored
	s.ScoreSumNanos += o.ScoreSumNanos
	s.Scores = addCounts(s.Scores, o.Scores)
	for n, c := range o.Defaulted {
		if s.Defaulted == nil {
			s.Defaulted = map[string]int64{}
		}
		s.Defaulted[n] += c
	}
	s.BaselineScore = addCounts(s.BaselineScore, o.BaselineScore)
	for n, c := range o.BaselineFeatures {
		if s.BaselineFeatures == nil {
			s.BaselineFeatures = map[string][]int64{}
		}
		s.BaselineFeatures[n] = addCounts(s.BaselineFeatures[n], c)
	}
	s.Labeled += o.Labeled
	s.Positives = addCounts(s.Positives, o.Positives)
	s.Negatives = addCounts(s.Negatives, o.Negatives)
	s.TP += o.TP
	s.FP += o.FP
	s.TN += o.TN
	s.FN += o.FN
	s.LogLossNanos += o.LogLossNanos
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := NewState()
	c.Merge(s)
	if s.Scores != nil {
		c.Scores = append([]int64(nil), s.Scores...)
	}
	if s.Offsets != nil {
		c.Offsets = make(map[string]int64, len(s.Offsets))
		for k, v := range s.Offsets {
			c.Offsets[k] = v
		}
	}
	return c
}

// Validate checks a decoded state.
func (s *State) Validate() error {
	if s.Requests < 0 || s.Errors < 0 || s.Scored < 0 || s.Labeled < 0 {
		return fmt.Errorf("state: negative count")
	}
	if s.Errors+s.Scored != s.Requests {
		return fmt.Errorf("state: errors %d + scored %d != requests %d", s.Errors, s.Scored, s.Requests)
	}
	if len(s.Scores) != ScoreBins {
		return fmt.Errorf("state.scores: %d bins, want %d", len(s.Scores), ScoreBins)
	}
	if s.Positives != nil && len(s.Positives) != ScoreBins || s.Negatives != nil && len(s.Negatives) != ScoreBins {
		return fmt.Errorf("state.positives/negatives: want %d bins", ScoreBins)
	}
	if s.TP+s.FP+s.TN+s.FN != s.Labeled {
		return fmt.Errorf("state: confusion matrix sums to %d, labeled %d", s.TP+s.FP+s.TN+s.FN, s.Labeled)
	}
	if s.LogLossNanos < 0 {
		return fmt.Errorf("state: negative log loss")
	}
	if math.IsNaN(s.LegacyScoreSum) || math.IsInf(s.LegacyScoreSum, 0) {
		return fmt.Errorf("state: score_sum is not finite")
	}
	return s.Latency.validate()
}

// Metrics are the figures derived from a State.
type Metrics struct {
	Requests, Errors                         int64
	LatencyP50Ms, LatencyP95Ms, LatencyP99Ms float64
	ScoreMean                                float64
	ScoreHistogram                           []int64
	FeatureDefaultRate                       map[string]float64
	ScorePSI, ScoreJS                        float64
	FeaturePSI, FeatureJS                    map[string]float64
	Labeled                                  int64
	Accuracy, Precision, Recall              float64
	LogLoss, AUC, CalibrationError           float64
}

// Derive computes the published figures of s; info may lack a baseline.
// Undefined ratios (no labels, no positives) are 0.
func (s *State) Derive(info ModelInfo) Metrics {
	m := Metrics{
		Requests:           s.Requests,
		Errors:             s.Errors,
		LatencyP50Ms:       s.Latency.Quantile(0.50),
		LatencyP95Ms:       s.Latency.Quantile(0.95),
		LatencyP99Ms:       s.Latency.Quantile(0.99),
		ScoreHistogram:     make([]int64, HistogramBins),
		FeatureDefaultRate: map[string]float64{},
		FeaturePSI:         map[string]float64{},
		FeatureJS:          map[string]float64{},
		Labeled:            s.Labeled,
	}
	if s.Scored > 0 {
		m.ScoreMean = float64(s.ScoreSumNanos) / 1e9 / float64(s.Scored)
		for n, c := range s.Defaulted {
			m.FeatureDefaultRate[n] = float64(c) / float64(s.Scored)
		}
	}
	for i, c := range s.Scores {
		m.ScoreHistogram[i*HistogramBins/len(s.Scores)] += c
	}
	if b := info.Baseline; b != nil {
		m.ScorePSI, _ = PSI(s.BaselineScore, b.Score.Fractions)
		m.ScoreJS, _ = JS(s.BaselineScore, b.Score.Fractions)
		for n, c := range s.BaselineFeatures {
			fb, ok := b.Features[n]
			if !ok {
				continue
			}
			if v, ok := PSI(c, fb.Fractions); ok {
				m.FeaturePSI[n] = v
			}
			if v, ok := JS(c, fb.Fractions); ok {
				m.FeatureJS[n] = v
			}
		}
	}
	if s.Labeled > 0 {
		m.Accuracy = float64(s.TP+s.TN) / float64(s.Labeled)
		m.LogLoss = float64(s.LogLossNanos) / 1e9 / float64(s.Labeled)
		if s.TP+s.FP > 0 {
			m.Precision = float64(s.TP) / float64(s.TP+s.FP)
		}
		if s.TP+s.FN > 0 {
			m.Recall = float64(s.TP) / float64(s.TP+s.FN)
		}
		m.AUC = auc(s.Positives, s.Negatives)
		m.CalibrationError = calibrationError(s.Positives, s.Negatives)
	}
	return m
}

// auc is the area under the ROC curve from score histograms by label: the
// chance a positive scores above a negative, ties within a bin counting
// half. 0 when either class is missing.
func auc(pos, neg []int64) float64 {
	var p, n int64
	for i := range pos {
		p += pos[i]
		n += neg[i]
	}
	if p == 0 || n == 0 {
		return 0
	}
	var below int64 // negatives in lower bins
	area := 0.0
	for i := range pos {
		area += float64(pos[i]) * (float64(below) + float64(neg[i])/2)
		below += neg[i]
	}
	return area / (float64(p) * float64(n))
}

// CalibrationBins is the number of bins of the expected calibration error.
const CalibrationBins = 10

// calibrationError is the expected calibration error over CalibrationBins
// equal score bins: Σ n_b/N · |mean score_b − positive rate_b|, with a
// bin's mean score taken from the fine bins' centres.
func calibrationError(pos, neg []int64) float64 {
	var total int64
	for i := range pos {
		total += pos[i] + neg[i]
	}
	if total == 0 {
		return 0
	}
	per := len(pos) / CalibrationBins
	ece := 0.0
	for b := 0; b < CalibrationBins; b++ {
		var n, p int64
		sum := 0.0
		for i := b * per; i < (b+1)*per; i++ {
			c := pos[i] + neg[i]
			n += c
			p += pos[i]
			sum += float64(c) * (float64(i) + 0.5) / float64(len(pos))
		}
		if n == 0 {
			continue
		}
		ece += float64(n) / float64(total) * math.Abs(sum/float64(n)-float64(p)/float64(n))
	}
	return ece
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
