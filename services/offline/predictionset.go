package offline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
	"github.com/tributary-ml/tributary/services/offline/internal/spine"
)

// Column names of a training set built from the prediction log.
const (
	ColPredictionID = "prediction_id"
	ColVersion      = "version"
	ColVariant      = "variant"
	ColRole         = "role"
	ColLabel        = "label"
	ColLabelTimeMs  = "label_time_ms"
	// ServedPrefix and OutputPrefix start the names of the columns of the
	// model inputs as served and of the model outputs.
	ServedPrefix = "served__"
	OutputPrefix = "output__"
)

// PredictionSetJob is one `tributary training-set --from-predictions` run:
// the spine is the archived prediction log of one model, with the inputs
// it was served, its outputs and the labels joined; extra feature views
// are computed point-in-time at each prediction's time.
type PredictionSetJob struct {
	// Model is the model whose predictions make the rows.
	Model string
	// Since and Until bound the predictions' times, [Since, Until)
	// (zero: unbounded).
	Since, Until time.Time
	// Archive is the archive's URL.
	Archive string
	// Out is the output file (.csv or .parquet).
	Out string
	// IncludeShadow adds the model's shadow predictions (by default only
	// served and canary ones, the predictions callers got).
	IncludeShadow bool
	// LabelsCDCTopic is the labels table's change-event topic (empty:
	// only the labels topic) and LabelColumns its column mapping.
	LabelsCDCTopic string
	LabelColumns   predlog.LabelColumns
	// Features are extra refs (view:feature or view:*), computed
	// point-in-time at each prediction's time; FeaturesDir is needed
	// with them.
	Features    []string
	FeaturesDir string
	// EventTimeOnly and Partitions are as in TrainingSetJob.
	EventTimeOnly bool
	Partitions    int
}

// Validate names the first missing or bad field.
func (j PredictionSetJob) Validate() error {
	switch {
	case j.Model == "":
		return errors.New("--from-predictions: the model name is empty")
	case j.Archive == "":
		return errors.New("--offline: required (the archive URL, e.g. file:///path/to/offline)")
	case j.Out == "":
		return errors.New("--out: required (a .csv or .parquet file)")
	case !j.Since.IsZero() && !j.Until.IsZero() && !j.Until.After(j.Since):
		return fmt.Errorf("--until %s is not after --since %s", j.Until.UTC().Format(time.RFC3339Nano), j.Since.UTC().Format(time.RFC3339Nano))
	case len(j.Features) > 0 && j.FeaturesDir == "":
		return errors.New("--features-dir: required with --features (the directory of feature view YAML)")
	}
	if _, err := spine.FormatOf(j.Out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// PredictionSetSummary says what a run built.
type PredictionSetSummary struct {
	// Rows are the predictions written; Labeled those with a label, of
	// which LabeledLate arrived at or after Until.
	Rows, Labeled, LabeledLate int
	// Shadow counts the model's shadow predictions in range (rows only
	// with IncludeShadow).
	Shadow int
	// BadLabels counts label records that did not decode (skipped).
	BadLabels int
	// Features counts the extra features computed.
	Features int
	Elapsed  time.Duration
}

func (s PredictionSetSummary) String() string {
	return fmt.Sprintf("%d predictions, %d labeled (%d labels arrived after --until), %d extra features, %d shadow predictions, %d undecodable label records skipped, in %s",
		s.Rows, s.Labeled, s.LabeledLate, s.Features, s.Shadow, s.BadLabels, s.Elapsed.Round(time.Millisecond))
}

// RunPredictionTrainingSet builds the training set of the job and writes
// it to j.Out.
func RunPredictionTrainingSet(ctx context.Context, j PredictionSetJob) (PredictionSetSummary, error) {
	start := time.Now()
	var sum PredictionSetSummary
	if err := j.Validate(); err != nil {
		return sum, err
	}
	var views []*featurespec.View
	if len(j.Features) > 0 {
		var err error
		if views, err = featurespec.LoadDir(j.FeaturesDir); err != nil {
			return sum, err
		}
		if _, err := pointintime.ResolveRefs(views, j.Features); err != nil {
			return sum, err
		}
	}
	arch, err := archive.Open(ctx, j.Archive)
	if err != nil {
		return sum, err
	}
	defer func() { _ = arch.Close() }()
	preds, shadow, err := modelPredictions(ctx, arch, j)
	if err != nil {
		return sum, err
	}
	sum.Shadow = shadow
	labels, bad, err := ReadLabels(ctx, arch, j.LabelsCDCTopic, j.LabelColumns)
	if err != nil {
		return sum, err
	}
	sum.BadLabels = bad
	sp, err := predictionSpine(j, preds, labels, &sum)
	if err != nil {
		return sum, err
	}
	res := &pointintime.Result{Rows: make([]int, sp.Len())}
	for i := range res.Rows {
		res.Rows[i] = i
	}
	if len(j.Features) > 0 {
		if err := RequireJoinKeys(sp, views, j.Features); err != nil {
			return sum, fmt.Errorf("--features: %w (the columns are the model's entity keys)", err)
		}
		if res, err = pointintime.Compute(ctx, pointintime.Request{
			Views: views, Refs: j.Features, Spine: sp, History: ArchiveHistory(arch),
			EventTimeOnly: j.EventTimeOnly, Partitions: j.Partitions,
		}); err != nil {
			return sum, err
		}
		sum.Features = len(res.Features)
	}
	if err := spine.Write(j.Out, sp, res); err != nil {
		return sum, err
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// modelPredictions reads the model's archived predictions made in
// [Since, Until), in archive order (each partition by offset), without
// shadow ones unless asked; shadow counts the model's shadow predictions
// in range. No prediction is an error that says what the archive holds.
func modelPredictions(ctx context.Context, arch *archive.Archive, j PredictionSetJob) ([]predlog.Prediction, int, error) {
	var out []predlog.Prediction
	shadow, outside := 0, 0
	others := map[string]int{}
	err := scanPredictions(ctx, arch, func(p predlog.Prediction) error {
		switch t := time.UnixMilli(p.TimeMs); {
		case p.Model != j.Model:
			others[p.Model]++
			return nil
		case !inRange(t, j.Since, j.Until):
			outside++
			return nil
		case p.Role == predlog.RoleShadow:
			shadow++
			if !j.IncludeShadow {
				return nil
			}
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(out) == 0 {
		return nil, 0, noPredictions(j, outside, shadow, others)
	}
	return out, shadow, nil
}

// scanPredictions calls fn with every archived prediction, in archive order
// (each partition by offset); a record that does not decode ends the scan
// with an error naming it.
func scanPredictions(ctx context.Context, arch *archive.Archive, fn func(p predlog.Prediction) error) error {
	return arch.Scan(ctx, predlog.PredictionsTopic, func(r *archive.Row) error {
		if len(r.Value) == 0 {
			return nil
		}
		var p predlog.Prediction
		if err := json.Unmarshal(r.Value, &p); err != nil {
			return fmt.Errorf("archived prediction %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		return fn(p)
	})
}

// inRange reports whether t is in [since, until); a zero bound is open.
func inRange(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
}

func noPredictions(j PredictionSetJob, outside, shadow int, others map[string]int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "no predictions of model %q in %s in the archive %s", j.Model, rangeText(j.Since, j.Until), j.Archive)
	var notes []string
	if outside > 0 {
		notes = append(notes, fmt.Sprintf("%d of %q outside the range", outside, j.Model))
	}
	if shadow > 0 && !j.IncludeShadow {
		notes = append(notes, fmt.Sprintf("%d shadow ones of %q (--include-shadow adds them)", shadow, j.Model))
	}
	if len(others) == 0 {
		notes = append(notes, "no predictions of other models")
	} else {
		n := 0
		var each []string
		for _, m := range slices.Sorted(maps.Keys(others)) {
			n += others[m]
			each = append(each, fmt.Sprintf("%s: %d", m, others[m]))
		}
		notes = append(notes, fmt.Sprintf("%d predictions of other models (%s)", n, strings.Join(each, ", ")))
	}
	fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
	return errors.New(b.String())
}

func rangeText(since, until time.Time) string {
	s, u := "-∞", "+∞"
	if !since.IsZero() {
		s = since.UTC().Format(time.RFC3339Nano)
	}
	if !until.IsZero() {
		u = until.UTC().Format(time.RFC3339Nano)
	}
	return "[" + s + ", " + u + ")"
}

// ReadLabels reads every archived label, from the labels topic and, when
// cdcTopic is set, from the labels table's change events (decoded with
// cols), whatever its time. A prediction with several labels keeps the
// earliest observed (ties: the labels topic's, then archive order);
// deletes in the table do not retract a label (as in the metrics
// service). bad counts the records that did not decode, skipped.
func ReadLabels(ctx context.Context, arch *archive.Archive, cdcTopic string, cols predlog.LabelColumns) (labels map[string]predlog.Label, bad int, err error) {
	labels = map[string]predlog.Label{}
	keep := func(l predlog.Label) {
		if old, ok := labels[l.PredictionID]; !ok || l.TimeMs < old.TimeMs {
			labels[l.PredictionID] = l
		}
	}
	err = arch.Scan(ctx, predlog.LabelsTopic, func(r *archive.Row) error {
		var l predlog.Label
		if err := json.Unmarshal(r.Value, &l); err != nil || l.PredictionID == "" {
			bad++
			return nil
		}
		keep(l)
		return nil
	})
	if err != nil || cdcTopic == "" {
		return labels, bad, err
	}
	dedupe := cdc.NewDeduper()
	err = arch.Scan(ctx, cdcTopic, func(r *archive.Row) error {
		l, err := predlog.DecodeCDCLabel(r.Value, cols)
		switch {
		case errors.Is(err, predlog.ErrNotALabel):
			return nil
		case err != nil:
			bad++
			return nil
		}
		// Changes re-sent after an ingest restart have new offsets: drop
		// them by LSN, as the metrics service does.
		if l.Op != cdc.OpRead && l.Pos != (cdc.Position{}) && !dedupe.Fresh(r.Topic, int(r.Partition), l.Op, l.Pos) {
			return nil
		}
		keep(l.Label)
		return nil
	})
	return labels, bad, err
}

// predictionSpine lays the predictions out as a spine: the entity keys
// (sorted), event_timestamp, the pass-through columns, served__<input>
// (null where defaulted or absent), output__<name> (null where absent),
// label and label_time_ms (null when no label arrived).
func predictionSpine(j PredictionSetJob, preds []predlog.Prediction, labels map[string]predlog.Label, sum *PredictionSetSummary) (*spine.Table, error) {
	keySet, inSet, outSet := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range preds {
		for k := range preds[i].EntityKeys {
			keySet[k] = true
		}
		for k := range preds[i].Features {
			inSet[k] = true
		}
		for _, k := range preds[i].Defaulted {
			inSet[k] = true
		}
		for k := range preds[i].Outputs {
			outSet[k] = true
		}
	}
	keys, ins, outs := slices.Sorted(maps.Keys(keySet)), slices.Sorted(maps.Keys(inSet)), slices.Sorted(maps.Keys(outSet))
	cols := append([]string(nil), keys...)
	kinds := make([]spine.ColKind, len(keys))
	cols = append(cols, spine.EventTimestamp, ColPredictionID, ColVersion, ColVariant, ColRole)
	kinds = append(kinds, spine.KindTimestamp, spine.KindString, spine.KindString, spine.KindString, spine.KindString)
	for _, in := range ins {
		cols, kinds = append(cols, ServedPrefix+in), append(kinds, spine.KindDouble)
	}
	for _, o := range outs {
		cols, kinds = append(cols, OutputPrefix+o), append(kinds, spine.KindDouble)
	}
	cols, kinds = append(cols, ColLabel, ColLabelTimeMs), append(kinds, spine.KindDouble, spine.KindInt64)

	nc := len(cols)
	cells := make([]string, 0, nc*len(preds))
	nulls := make([]bool, 0, nc*len(preds))
	events := make([]int64, 0, len(preds))
	add := func(s string, null bool) {
		cells, nulls = append(cells, s), append(nulls, null)
	}
	num := func(x float64, ok bool) {
		if ok {
			add(strconv.FormatFloat(x, 'g', -1, 64), false)
		} else {
			add("", true)
		}
	}
	for i := range preds {
		p := &preds[i]
		for _, k := range keys {
			v, ok := p.EntityKeys[k]
			add(v, !ok)
		}
		add(strconv.FormatInt(p.TimeMs, 10), false)
		add(p.PredictionID, false)
		add(p.Version, false)
		add(p.Variant, false)
		add(p.Role, false)
		for _, in := range ins {
			x, ok := p.Features[in]
			num(x, ok && !slices.Contains(p.Defaulted, in))
		}
		for _, o := range outs {
			x, ok := p.Outputs[o]
			num(x, ok)
		}
		id := p.PredictionID
		if p.Role == predlog.RoleShadow && p.ParentID != "" {
			// Labels carry the id the caller got: the parent's.
			id = p.ParentID
		}
		l, ok := labels[id]
		num(l.Value, ok)
		if ok {
			add(strconv.FormatInt(l.TimeMs, 10), false)
			sum.Labeled++
			if !j.Until.IsZero() && l.TimeMs >= j.Until.UnixMilli() {
				sum.LabeledLate++
			}
		} else {
			add("", true)
		}
		events = append(events, p.TimeMs)
	}
	sum.Rows = len(preds)
	return spine.NewTable("predictions of "+j.Model, cols, kinds, cells, nulls, events)
}
