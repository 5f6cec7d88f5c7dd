package core

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// DefaultVariant names the arm of a model without an experiment.
const DefaultVariant = "default"

// maxEnsembleDepth bounds ensembles of ensembles (and catches cycles).
const maxEnsembleDepth = 4

// Request asks one model for predictions of one or more rows.
type Request struct {
	Model string
	// Version pins a version (0: the experiment or the latest version decides).
	Version int
	// Variant pins an experiment variant by name (for debugging).
	Variant string
	Rows    []Row
	// Batch makes error messages name the row (rows[i]...).
	Batch bool
}

// Row is one entity with its request-time features.
type Row struct {
	EntityKeys map[string]string
	Features   map[string]model.Raw
}

// Prediction is the answer for one row.
type Prediction struct {
	ID string
	// Model is the model that made the prediction: the requested one, or
	// another model an experiment variant names (its version then numbers
	// that model's versions, so the metrics service finds the right baseline).
	Model   string
	Version int
	Variant string
	// Outputs are in the order the model's config declares them.
	Outputs []Output
	// Defaulted names the inputs that took their declared default.
	Defaulted []string
}

// Output is one named model output.
type Output struct {
	Name  string
	Value float64
}

// Score returns the "score" output.
func (p *Prediction) Score() float64 {
	for _, o := range p.Outputs {
		if o.Name == model.OutputScore {
			return o.Value
		}
	}
	return 0
}

// Options configure a Predictor; zero values get defaults.
type Options struct {
	// MaxConcurrent bounds the requests in flight; more are refused with ResourceExhausted.
	MaxConcurrent int
	Clock         func() time.Time
	NewID         func() string
	Meter         metric.Meter
	Log           *slog.Logger
	// Weights adapts ensemble weights (optional).
	Weights EnsembleWeights
}

// Predictor answers prediction requests.
type Predictor struct {
	models Models
	store  FeatureStore
	plog   PredictionLog
	opts   Options
	sem    chan struct{}

	predictions metric.Int64Counter
	defaulted   metric.Int64Counter
	fetchErrors metric.Int64Counter
	rejected    metric.Int64Counter
	duration    metric.Float64Histogram
}

// NewPredictor builds a Predictor.
func NewPredictor(models Models, store FeatureStore, plog PredictionLog, opts Options) (*Predictor, error) {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 256
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = uuid.NewString
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &Predictor{models: models, store: store, plog: plog, opts: opts, sem: make(chan struct{}, opts.MaxConcurrent)}
	var err error
	m := opts.Meter
	if p.predictions, err = m.Int64Counter("tributary_modelserver_predictions",
		metric.WithDescription("predictions made, by model, version, variant and role (served, canary, shadow)")); err != nil {
		return nil, err
	}
	if p.defaulted, err = m.Int64Counter("tributary_modelserver_defaulted_features",
		metric.WithDescription("model inputs that took their declared default (missing, stale or timed-out feature), by model and input")); err != nil {
		return nil, err
	}
	if p.fetchErrors, err = m.Int64Counter("tributary_modelserver_feature_fetch_errors",
		metric.WithDescription("feature fetches from the featureserver that failed or timed out")); err != nil {
		return nil, err
	}
	if p.rejected, err = m.Int64Counter("tributary_modelserver_rejected_requests",
		metric.WithDescription("requests refused with ResourceExhausted because the concurrency limit was reached")); err != nil {
		return nil, err
	}
	if p.duration, err = m.Float64Histogram("tributary_modelserver_predict_duration_seconds",
		metric.WithDescription("time to answer a prediction request, feature fetch included"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)); err != nil {
		return nil, err
	}
	return p, nil
}

// InFlight is the number of requests being answered now.
func (p *Predictor) InFlight() int { return len(p.sem) }

// Models returns the models served now.
func (p *Predictor) Models() *model.Set { return p.models.Snapshot() }

// target is one model version a row is scored with.
type target struct {
	entry   *model.Entry
	ver     *model.Version
	variant string
	role    string
}

func (t target) key() string {
	return t.entry.Name + "/" + strconv.Itoa(t.ver.Number) + "/" + t.variant + "/" + t.role
}

// Predict answers req with one prediction per row.
func (p *Predictor) Predict(ctx context.Context, req *Request) ([]Prediction, error) {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	default:
		p.rejected.Add(ctx, 1)
		return nil, errorf(KindResourceExhausted, "modelserver is at its limit of %d concurrent requests; retry with backoff", cap(p.sem))
	}
	start := p.opts.Clock()
	snap := p.models.Snapshot()
	entry, ok := snap.Get(req.Model)
	if !ok {
		return nil, errorf(KindNotFound, "model %q is not in the repository", req.Model)
	}
	if len(req.Rows) == 0 {
		return nil, errorf(KindInvalidArgument, "rows: need at least one row")
	}
	// Resolve each row's served target and the shadows.
	served := make([]target, len(req.Rows))
	var shadows []target
	for i := range req.Rows {
		t, err := p.route(snap, entry, req, i)
		if err != nil {
			return nil, err
		}
		served[i] = t
	}
	if req.Version == 0 && req.Variant == "" && entry.Config.Experiment != nil {
		for _, v := range entry.Config.Experiment.Shadows {
			t, err := resolveVariant(snap, entry, v, predlog.RoleShadow)
			if err != nil {
				p.opts.Log.Warn("shadow variant not loaded", "model", entry.Name, "variant", v.Name, "err", err)
				continue
			}
			shadows = append(shadows, t)
		}
	}
	// Plan the one feature fetch over everything that runs.
	pl := &plan{refIdx: map[string]int{}}
	for _, t := range served {
		if err := pl.add(snap, t.entry, t.ver, 0); err != nil {
			return nil, err
		}
	}
	for _, t := range shadows {
		if err := pl.add(snap, t.entry, t.ver, 0); err != nil {
			p.opts.Log.Warn("shadow variant cannot run", "model", entry.Name, "variant", t.variant, "err", err)
		}
	}
	rowsPrefix := func(i int) string {
		if req.Batch {
			return fmt.Sprintf("rows[%d].", i)
		}
		return ""
	}
	table, err := p.fetch(ctx, pl, req, rowsPrefix)
	if err != nil {
		return nil, err
	}
	// Score the served targets, grouped so each model version scores its rows in one batch.
	out := make([]Prediction, len(req.Rows))
	logs := make([]*predlog.Prediction, 0, len(req.Rows))
	groups := map[string][]int{}
	var order []string
	for i, t := range served {
		k := t.key()
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		rows := groups[k]
		t := served[rows[0]]
		res, err := p.evaluate(ctx, snap, t.entry, t.ver, rows, req, table, rowsPrefix, 0)
		if err != nil {
			return nil, err
		}
		for j, r := range rows {
			pr := Prediction{ID: p.opts.NewID(), Model: t.entry.Name, Version: t.ver.Number, Variant: t.variant,
				Outputs: outputs(t.entry.Config, res.scores[j]), Defaulted: res.defaulted[j]}
			out[r] = pr
			logs = append(logs, p.record(ctx, &pr, t.role, req.Rows[r].EntityKeys, res.used[j], ""))
		}
	}
	for _, t := range shadows {
		all := make([]int, len(req.Rows))
		for i := range all {
			all[i] = i
		}
		res, err := p.evaluate(ctx, snap, t.entry, t.ver, all, req, table, rowsPrefix, 0)
		for i := range req.Rows {
			pr := Prediction{ID: p.opts.NewID(), Model: t.entry.Name, Version: t.ver.Number, Variant: t.variant}
			errMsg := ""
			var used map[string]float64
			if err != nil {
				errMsg = err.Error()
			} else {
				pr.Outputs, pr.Defaulted, used = outputs(t.entry.Config, res.scores[i]), res.defaulted[i], res.used[i]
			}
			rec := p.record(ctx, &pr, t.role, req.Rows[i].EntityKeys, used, errMsg)
			// A shadow prediction is never returned: labels carry the id
			// of the row's served prediction, which it names as its parent.
			rec.ParentID = out[i].ID
			logs = append(logs, rec)
		}
	}
	elapsed := p.opts.Clock().Sub(start)
	latencyMs := float64(elapsed.Microseconds()) / 1000
	for _, l := range logs {
		l.LatencyMs = latencyMs
		p.predictions.Add(ctx, 1, metric.WithAttributes(
			attribute.String("model", l.Model), attribute.String("version", l.Version),
			attribute.String("variant", l.Variant), attribute.String("role", l.Role)))
		for _, d := range l.Defaulted {
			p.defaulted.Add(ctx, 1, metric.WithAttributes(attribute.String("model", l.Model), attribute.String("input", d)))
		}
		if p.plog != nil {
			p.plog.Log(ctx, l)
		}
	}
	p.duration.Record(ctx, elapsed.Seconds(), metric.WithAttributes(attribute.String("model", entry.Name)))
	return out, nil
}

func (p *Predictor) record(ctx context.Context, pr *Prediction, role string, keys map[string]string, used map[string]float64, errMsg string) *predlog.Prediction {
	rec := &predlog.Prediction{
		PredictionID: pr.ID, Model: pr.Model, Version: strconv.Itoa(pr.Version), Variant: pr.Variant, Role: role,
		EntityKeys: keys, Features: used, Defaulted: pr.Defaulted, Error: errMsg,
		TimeMs: p.opts.Clock().UnixMilli(),
	}
	if len(pr.Outputs) > 0 {
		rec.Outputs = make(map[string]float64, len(pr.Outputs))
		for _, o := range pr.Outputs {
			rec.Outputs[o.Name] = o.Value
		}
		rec.Score = pr.Score()
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		rec.TraceID = sc.TraceID().String()
	}
	return rec
}

func outputs(cfg *model.Config, score float64) []Output {
	out := make([]Output, 0, len(cfg.Outputs))
	for _, name := range cfg.Outputs {
		switch name {
		case model.OutputScore:
			out = append(out, Output{Name: name, Value: score})
		case model.OutputLabel:
			l := 0.0
			if score >= *cfg.Threshold {
				l = 1
			}
			out = append(out, Output{Name: name, Value: l})
		}
	}
	return out
}

// route picks the target that serves row i.
func (p *Predictor) route(snap *model.Set, entry *model.Entry, req *Request, i int) (target, error) {
	if req.Version != 0 {
		ver, ok := entry.Version(req.Version)
		if !ok {
			return target{}, errorf(KindNotFound, "model %q has no loaded version %d (loaded: %v)", entry.Name, req.Version, entry.VersionNumbers())
		}
		return target{entry: entry, ver: ver, variant: DefaultVariant, role: predlog.RoleServed}, nil
	}
	exp := entry.Config.Experiment
	if req.Variant != "" {
		if exp == nil {
			if req.Variant == DefaultVariant {
				return defaultTarget(entry)
			}
			return target{}, errorf(KindNotFound, "variant %q: model %q has no experiment", req.Variant, entry.Name)
		}
		for _, v := range append(slices.Clone(exp.Variants), exp.Shadows...) {
			if v.Name == req.Variant {
				t, err := resolveVariant(snap, entry, v, predlog.RoleServed)
				if err != nil {
					return target{}, err
				}
				return t, nil
			}
		}
		return target{}, errorf(KindNotFound, "variant %q: model %q has no such variant", req.Variant, entry.Name)
	}
	if exp == nil {
		return defaultTarget(entry)
	}
	u := stickyPoint(entry.Name, exp.StickyKeys, req.Rows[i].EntityKeys)
	total := 0.0
	for _, v := range exp.Variants {
		total += v.Weight
	}
	acc := 0.0
	chosen := exp.Variants[len(exp.Variants)-1]
	for _, v := range exp.Variants {
		acc += v.Weight
		if u*total < acc {
			chosen = v
			break
		}
	}
	role := predlog.RoleServed
	if chosen.Canary {
		role = predlog.RoleCanary
	}
	return resolveVariant(snap, entry, chosen, role)
}

func defaultTarget(entry *model.Entry) (target, error) {
	ver, ok := entry.Version(0)
	if !ok {
		return target{}, errorf(KindUnavailable, "model %q has no loaded version", entry.Name)
	}
	return target{entry: entry, ver: ver, variant: DefaultVariant, role: predlog.RoleServed}, nil
}

func resolveVariant(snap *model.Set, entry *model.Entry, v model.Variant, role string) (target, error) {
	e := entry
	if v.Model != "" && v.Model != entry.Name {
		var ok bool
		if e, ok = snap.Get(v.Model); !ok {
			return target{}, errorf(KindUnavailable, "variant %q of model %q: model %q is not loaded", v.Name, entry.Name, v.Model)
		}
	}
	ver, ok := e.Version(v.Version)
	if !ok {
		return target{}, errorf(KindUnavailable, "variant %q of model %q: version %d of %q is not loaded", v.Name, entry.Name, v.Version, e.Name)
	}
	return target{entry: e, ver: ver, variant: v.Name, role: role}, nil
}

// stickyPoint maps an entity to a point in [0, 1), the same for the same
// entity and model on every request and every replica.
func stickyPoint(modelName string, keys []string, entity map[string]string) float64 {
	if len(keys) == 0 {
		keys = make([]string, 0, len(entity))
		for k := range entity {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	}
	h := fnv.New64a()
	h.Write([]byte(modelName))
	for _, k := range keys {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{'='})
		h.Write([]byte(entity[k]))
	}
	// FNV's high bits barely move when only the last bytes differ (user-1,
	// user-2, ...); a splitmix64 finaliser spreads every input bit over all of them.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// plan collects the feature refs and join keys of every model that runs.
type plan struct {
	refs      []string
	refIdx    map[string]int
	views     []string
	viewSeen  map[string]bool
	keys      []string // declared entity keys, when every model declares them
	undeclare bool
	timeout   time.Duration
}

func (pl *plan) add(snap *model.Set, e *model.Entry, ver *model.Version, depth int) error {
	if depth > maxEnsembleDepth {
		return errorf(KindInternal, "model %q: ensembles nest deeper than %d (a cycle?)", e.Name, maxEnsembleDepth)
	}
	cfg := e.Config
	if cfg.Format == "ensemble" {
		for _, m := range cfg.Ensemble.Members {
			me, mv, err := member(snap, e, m)
			if err != nil {
				return err
			}
			if err := pl.add(snap, me, mv, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	hasFeature := false
	for _, in := range cfg.Inputs {
		if !in.FromFeatureServer() {
			continue
		}
		hasFeature = true
		if _, ok := pl.refIdx[in.Feature]; !ok {
			pl.refIdx[in.Feature] = len(pl.refs)
			pl.refs = append(pl.refs, in.Feature)
		}
		if pl.viewSeen == nil {
			pl.viewSeen = map[string]bool{}
		}
		if v := in.View(); !pl.viewSeen[v] {
			pl.viewSeen[v] = true
			pl.views = append(pl.views, v)
		}
	}
	if hasFeature {
		pl.timeout = max(pl.timeout, cfg.Timeout())
		if len(cfg.EntityKeys) == 0 {
			pl.undeclare = true
		}
		for _, k := range cfg.EntityKeys {
			if !slices.Contains(pl.keys, k) {
				pl.keys = append(pl.keys, k)
			}
		}
	}
	return nil
}

func member(snap *model.Set, ens *model.Entry, m model.Member) (*model.Entry, *model.Version, error) {
	me, ok := snap.Get(m.Model)
	if !ok {
		return nil, nil, errorf(KindUnavailable, "ensemble %q: member %q: model %q is not loaded", ens.Name, m.Name, m.Model)
	}
	mv, ok := me.Version(m.Version)
	if !ok {
		return nil, nil, errorf(KindUnavailable, "ensemble %q: member %q: version %d of model %q is not loaded", ens.Name, m.Name, m.Version, m.Model)
	}
	return me, mv, nil
}

// table holds the fetched features of every row.
type table struct {
	refIdx map[string]int
	values [][]Fetched // nil when the fetch failed: every feature takes its default
}

// fetch checks the entity keys and fetches every planned ref in one call.
func (p *Predictor) fetch(ctx context.Context, pl *plan, req *Request, prefix func(int) string) (*table, error) {
	t := &table{refIdx: pl.refIdx}
	if len(pl.refs) == 0 {
		return t, nil
	}
	keys := pl.keys
	if pl.undeclare {
		jk, err := p.store.JoinKeys(ctx, pl.views)
		if err != nil {
			// Without the views' join keys every given entity key is sent and the
			// featureserver picks what it needs.
			p.opts.Log.Debug("join keys unknown, sending all entity keys", "err", err)
			keys = nil
		} else {
			for _, v := range pl.views {
				for _, k := range jk[v] {
					if !slices.Contains(keys, k) {
						keys = append(keys, k)
					}
				}
			}
		}
	}
	rows := make([]map[string]string, len(req.Rows))
	for i, r := range req.Rows {
		if keys == nil {
			if len(r.EntityKeys) == 0 {
				return nil, errorf(KindInvalidArgument, "%sentity_keys: model %q needs entity keys for its features %v", prefix(i), req.Model, pl.views)
			}
			rows[i] = r.EntityKeys
			continue
		}
		row := make(map[string]string, len(keys))
		for _, k := range keys {
			v, ok := r.EntityKeys[k]
			if !ok || v == "" {
				return nil, errorf(KindInvalidArgument, "%sentity_keys.%s: missing; model %q needs it to fetch features of %v", prefix(i), k, req.Model, pl.views)
			}
			row[k] = v
		}
		rows[i] = row
	}
	// Whether the caller's deadline, not the model's feature timeout, bounds
	// the fetch: a fetch that then runs out of time is the caller's
	// DeadlineExceeded, even when the peer notices a moment before ctx does.
	callerDeadline, hasDeadline := ctx.Deadline()
	callerBound := hasDeadline && !callerDeadline.After(time.Now().Add(pl.timeout))
	fctx, cancel := context.WithTimeout(ctx, pl.timeout)
	defer cancel()
	vals, err := p.store.GetOnlineFeatures(fctx, pl.refs, rows)
	if err != nil {
		if callerBound && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, errorf(KindDeadlineExceeded, "deadline exceeded while fetching features for model %q", req.Model)
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(cerr, context.DeadlineExceeded) {
				return nil, errorf(KindDeadlineExceeded, "deadline exceeded while fetching features for model %q", req.Model)
			}
			return nil, errorf(KindCanceled, "request canceled while fetching features for model %q", req.Model)
		}
		reason := "error"
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(fctx.Err(), context.DeadlineExceeded) {
			reason = "timeout"
		}
		p.fetchErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
		p.opts.Log.Warn("feature fetch failed, using defaults", "model", req.Model, "refs", len(pl.refs), "rows", len(rows), "err", err)
		return t, nil
	}
	if len(vals) != len(rows) {
		p.fetchErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "malformed")))
		p.opts.Log.Warn("feature fetch answered the wrong number of rows, using defaults", "want", len(rows), "got", len(vals))
		return t, nil
	}
	for i := range vals {
		if len(vals[i]) != len(pl.refs) {
			p.fetchErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "malformed")))
			p.opts.Log.Warn("feature fetch answered the wrong number of values, using defaults", "want", len(pl.refs), "got", len(vals[i]))
			return t, nil
		}
	}
	t.values = vals
	return t, nil
}

// result is the scoring of some rows by one model version.
type result struct {
	scores    []float64
	defaulted [][]string
	used      []map[string]float64
}

// evaluate scores the given rows of req with one model version.
func (p *Predictor) evaluate(ctx context.Context, snap *model.Set, e *model.Entry, ver *model.Version, rows []int, req *Request, tb *table, prefix func(int) string, depth int) (*result, error) {
	if depth > maxEnsembleDepth {
		return nil, errorf(KindInternal, "model %q: ensembles nest deeper than %d", e.Name, maxEnsembleDepth)
	}
	cfg := e.Config
	res := &result{scores: make([]float64, len(rows)), defaulted: make([][]string, len(rows)), used: make([]map[string]float64, len(rows))}
	var x []float64
	width := 0
	if cfg.Format == "ensemble" {
		width = len(cfg.Ensemble.Members)
		x = make([]float64, len(rows)*width)
		for mi, m := range cfg.Ensemble.Members {
			me, mv, err := member(snap, e, m)
			if err != nil {
				return nil, err
			}
			mr, err := p.evaluate(ctx, snap, me, mv, rows, req, tb, prefix, depth+1)
			if err != nil {
				return nil, err
			}
			for j := range rows {
				x[j*width+mi] = mr.scores[j]
				res.used[j] = mergeUsed(res.used[j], mr.used[j])
				for _, d := range mr.defaulted[j] {
					if !slices.Contains(res.defaulted[j], d) {
						res.defaulted[j] = append(res.defaulted[j], d)
					}
				}
			}
		}
	} else {
		width = len(cfg.Inputs)
		x = make([]float64, len(rows)*width)
		for j, r := range rows {
			used := make(map[string]float64, width)
			row := req.Rows[r]
			for i := range cfg.Inputs {
				in := &cfg.Inputs[i]
				raw, ok := model.Raw{}, false
				if in.FromFeatureServer() {
					if tb.values != nil {
						f := tb.values[r][tb.refIdx[in.Feature]]
						raw, ok = f.Value, f.Present
					}
				} else {
					raw, ok = row.Features[in.Name]
				}
				var v float64
				if ok {
					var err error
					v, err = in.Apply(raw)
					if err != nil {
						if !in.FromFeatureServer() {
							return nil, errorf(KindInvalidArgument, "%sfeatures.%s: %q is a string; input %q of model %q is numeric", prefix(r), in.Name, raw.Str, in.Name, cfg.Name)
						}
						ok = false // the featureserver sent a string for a numeric input: take the default
					}
				}
				if !ok {
					v = in.ApplyDefault()
					res.defaulted[j] = append(res.defaulted[j], in.Name)
					used[in.Name] = in.Default
				} else if raw.IsStr {
					used[in.Name] = v // a onehot indicator
				} else {
					used[in.Name] = raw.Num
				}
				x[j*width+i] = v
			}
			res.used[j] = used
		}
	}
	if cfg.Format == "ensemble" && p.opts.Weights != nil && cfg.Ensemble.Combine == "average" {
		if w := p.opts.Weights.Weights(cfg.Name); len(w) == width {
			weightedAverage(x, width, w, res.scores)
			return res, nil
		}
	}
	if err := ver.Scorer.Score(ctx, x, width, res.scores); err != nil {
		if k := KindOf(err); k != KindInternal {
			return nil, err
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errorf(KindDeadlineExceeded, "deadline exceeded while scoring with model %q version %d", cfg.Name, ver.Number)
		}
		return nil, errorf(KindUnavailable, "model %q version %d: %v", cfg.Name, ver.Number, err)
	}
	return res, nil
}

// weightedAverage combines member scores with weights that add up to 1.
func weightedAverage(x []float64, width int, w, out []float64) {
	for r := range out {
		z := 0.0
		for i, wi := range w {
			z += wi * x[r*width+i]
		}
		out[r] = z
	}
}

func mergeUsed(dst, src map[string]float64) map[string]float64 {
	if dst == nil {
		dst = make(map[string]float64, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// VariantNames lists a model's experiment variants and shadows.
func VariantNames(cfg *model.Config) []string {
	if cfg.Experiment == nil {
		return []string{DefaultVariant}
	}
	var out []string
	for _, v := range cfg.Experiment.Variants {
		out = append(out, v.Name)
	}
	for _, v := range cfg.Experiment.Shadows {
		out = append(out, v.Name)
	}
	return out
}

// SplitRef splits "view:feature".
func SplitRef(ref string) (view, feature string) {
	view, feature, _ = strings.Cut(ref, ":")
	return view, feature
}
