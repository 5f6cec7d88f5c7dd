// Package skew compares what a model was served with what the offline
// training-set engine computes: every non-defaulted feature input of every
// logged prediction is recomputed point-in-time at the prediction's time
// from the archive, and the two are compared exactly.
//
// The online value is read a little before the prediction is logged, from
// tiles that land a few milliseconds after their records arrived. So a
// value that differs at the prediction's instant T but equals the offline
// value at T - d for one of the allowed lags d is reported apart, as in
// flight with lag d (the smallest such d), not as skew.
package skew

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/modelrepo"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

// DefaultLags are the in-flight allowances tried, smallest first: how much
// later than its records' arrival a value may have become servable (the
// featurizer's flush, Kafka, the featureserver's apply; seconds on a
// loaded machine).
var DefaultLags = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second}

// Request is one skew computation.
type Request struct {
	Views []*featurespec.View
	// Configs are the model's config.yaml by version ("" is the model-level
	// one, used for versions without their own).
	Configs map[string]*modelrepo.Config
	// Predictions are the logged predictions to check (one model).
	Predictions []predlog.Prediction
	History     pointintime.History
	// Lags are the in-flight allowances (nil: DefaultLags).
	Lags []time.Duration
	// Partitions is the featurizer's repartition partition count (0: its default).
	Partitions int
	// Examples is how many differing values to keep per feature.
	Examples int
}

// Example is one differing value.
type Example struct {
	PredictionID string
	EntityKeys   map[string]string
	TimeMs       int64
	Served       float64
	// Offline is the offline value; OfflineStatus says whether there was one.
	Offline       float64
	OfflineStatus string
}

// Feature is the report of one model input.
type Feature struct {
	Input, Ref string
	// Compared counts the predictions that were served a value of it.
	Compared int
	// Equal values, values InFlight (equal at an earlier instant within
	// the allowed lags), Differ (the skew) and Defaulted (not served a
	// value: not compared).
	Equal, InFlight, Differ, Defaulted int
	// MaxDiff is the largest absolute difference of the values that differ
	// (+Inf when the offline side had no value).
	MaxDiff float64
	// MaxLag is the largest in-flight lag seen.
	MaxLag   time.Duration
	Examples []Example
}

// SkewShare is the share of compared values that differ.
func (f Feature) SkewShare() float64 {
	if f.Compared == 0 {
		return 0
	}
	return float64(f.Differ) / float64(f.Compared)
}

// Report is the skew of one model.
type Report struct {
	Predictions int
	// Skipped counts predictions without a config for their version, or
	// that failed (no features were served).
	Skipped  int
	Features []Feature
	// Records is how many archived records were replayed.
	Records int64
}

// Differ is the total of differing values.
func (r *Report) Differ() int {
	n := 0
	for _, f := range r.Features {
		n += f.Differ
	}
	return n
}

// input is a model input fetched from the featureserver, by its ref's
// column in the training set.
type input struct {
	name, ref string
	col       int
	feature   int // index in Report.Features
}

// Compute computes the report.
func Compute(ctx context.Context, req Request) (*Report, error) {
	lags := req.Lags
	if lags == nil {
		lags = DefaultLags
	}
	if !slices.IsSorted(lags) {
		return nil, errors.New("skew: lags must be sorted, smallest first")
	}
	rep := &Report{}
	// The refs of every version's feature inputs, once each.
	var refs []string
	refCol := map[string]int{}
	featIdx := map[string]int{}
	inputs := map[string][]input{}
	for _, v := range slices.Sorted(maps.Keys(req.Configs)) {
		for _, in := range req.Configs[v].Inputs {
			if !in.FromFeatureServer() {
				continue
			}
			c, ok := refCol[in.Feature]
			if !ok {
				c = len(refs)
				refCol[in.Feature] = c
				refs = append(refs, in.Feature)
			}
			key := in.Name + "\x00" + in.Feature
			fi, ok := featIdx[key]
			if !ok {
				fi = len(rep.Features)
				featIdx[key] = fi
				rep.Features = append(rep.Features, Feature{Input: in.Name, Ref: in.Feature})
			}
			inputs[v] = append(inputs[v], input{name: in.Name, ref: in.Feature, col: c, feature: fi})
		}
	}
	if len(refs) == 0 {
		return nil, errors.New("skew: the model has no input fetched from the featureserver (inputs[].feature)")
	}
	feats, err := pointintime.ResolveRefs(req.Views, refs)
	if err != nil {
		return nil, fmt.Errorf("skew: the model's inputs: %w", err)
	}
	var keys []string
	for _, f := range feats {
		for _, k := range f.View.Entity.JoinKeys {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	var preds []*predlog.Prediction
	var ins [][]input
	for i := range req.Predictions {
		p := &req.Predictions[i]
		in, ok := inputs[p.Version]
		if !ok {
			in, ok = inputs[""]
		}
		if !ok || p.Error != "" || !hasKeys(p.EntityKeys, keys) {
			rep.Skipped++
			continue
		}
		preds = append(preds, p)
		ins = append(ins, in)
	}
	rep.Predictions = len(preds)
	sp := &spine{preds: preds, lags: lags}
	res, err := pointintime.Compute(ctx, pointintime.Request{Views: req.Views, Refs: refs, Spine: sp, History: req.History, Partitions: req.Partitions})
	if err != nil {
		return nil, err
	}
	rep.Records = res.Stats.Records
	width := 1 + len(lags)
	for k, p := range preds {
		for _, in := range ins[k] {
			f := &rep.Features[in.feature]
			if slices.Contains(p.Defaulted, in.name) {
				f.Defaulted++
				continue
			}
			got, ok := p.Features[in.name]
			if !ok {
				f.Defaulted++
				continue
			}
			f.Compared++
			at := res.Row(k * width)[in.col]
			if x, ok := number(at); ok && x == got {
				f.Equal++
				continue
			}
			lag := time.Duration(-1)
			for j, d := range lags {
				if x, ok := number(res.Row(k*width + 1 + j)[in.col]); ok && x == got {
					lag = d
					break
				}
			}
			if lag >= 0 {
				f.InFlight++
				f.MaxLag = max(f.MaxLag, lag)
				continue
			}
			f.Differ++
			x, ok := number(at)
			diff := math.Inf(1)
			if ok {
				diff = math.Abs(x - got)
			}
			f.MaxDiff = max(f.MaxDiff, diff)
			if len(f.Examples) < req.Examples {
				f.Examples = append(f.Examples, Example{PredictionID: p.PredictionID, EntityKeys: p.EntityKeys, TimeMs: p.TimeMs,
					Served: got, Offline: x, OfflineStatus: at.Status.String()})
			}
		}
	}
	return rep, nil
}

func hasKeys(m map[string]string, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

// number is a served value as the modelserver logs it: numbers as they
// are, booleans as 0/1; no value (NOT_FOUND) or a STALE one (the
// modelserver takes the default for it) is none.
func number(v served.Value) (float64, bool) {
	if v.Status != served.StatusPresent {
		return 0, false
	}
	switch v.Kind {
	case served.KindDouble:
		return v.Double, true
	case served.KindInt64:
		return float64(v.Int), true
	case served.KindBool:
		if v.Bool {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// spine has, per prediction, its instant and then the instants of the
// allowed lags before it.
type spine struct {
	preds []*predlog.Prediction
	lags  []time.Duration
}

func (s *spine) Len() int { return len(s.preds) * (1 + len(s.lags)) }

func (s *spine) EventMs(i int) int64 {
	w := 1 + len(s.lags)
	t := s.preds[i/w].TimeMs
	if j := i % w; j > 0 {
		t -= s.lags[j-1].Milliseconds()
	}
	return t
}

func (s *spine) JoinKey(i int, key string) (string, bool) {
	v, ok := s.preds[i/(1+len(s.lags))].EntityKeys[key]
	return v, ok
}

// String renders the report as a table.
func (r *Report) String() string {
	b := fmt.Appendf(nil, "%d predictions checked (%d skipped), %d archived records replayed\n", r.Predictions, r.Skipped, r.Records)
	b = fmt.Appendf(b, "%-18s %-34s %8s %8s %9s %7s %6s %9s %9s\n", "input", "feature", "compared", "equal", "in-flight", "differ", "skew", "max diff", "max lag")
	for _, f := range r.Features {
		maxDiff := "-"
		if f.Differ > 0 {
			maxDiff = fmt.Sprintf("%.4g", f.MaxDiff)
		}
		maxLag := "-"
		if f.InFlight > 0 {
			maxLag = f.MaxLag.String()
		}
		b = fmt.Appendf(b, "%-18s %-34s %8d %8d %9d %7d %5.1f%% %9s %9s\n", f.Input, f.Ref, f.Compared, f.Equal, f.InFlight, f.Differ, 100*f.SkewShare(), maxDiff, maxLag)
		for _, e := range f.Examples {
			b = fmt.Appendf(b, "    e.g. prediction %s %v at %s: served %v, offline %v (%s)\n", e.PredictionID, e.EntityKeys,
				time.UnixMilli(e.TimeMs).UTC().Format(time.RFC3339Nano), e.Served, e.Offline, e.OfflineStatus)
		}
	}
	return string(b)
}
