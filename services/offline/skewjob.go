package offline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/modelrepo"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/skew"
)

// SkewJob is one `tributary skew` run: the features a model was served,
// from the archived prediction log, recomputed offline and compared.
type SkewJob struct {
	FeaturesDir string
	// Archive is the archive's URL.
	Archive string
	// ModelsDir is the model repository (its config.yaml files say which
	// feature each input is).
	ModelsDir string
	Model     string
	// Since and Until bound the predictions' times (zero: unbounded).
	Since, Until time.Time
	// Partitions is the featurizer's --repartition-partitions (0: its default).
	Partitions int
	// Examples is how many differing values to show per feature.
	Examples int
	// KafkaBrokers, when set, are asked how far the archive is complete:
	// predictions after that are not checked (their features may need
	// records the archiver has not written yet).
	KafkaBrokers []string
}

// SkewReport is the skew of one model's features.
type SkewReport struct {
	*skew.Report
	// Completeness is how far the archive was complete (zero when Kafka
	// was not asked), and Later the predictions after it, not checked.
	Completeness Completeness
	Later        int
}

// Line sums the report up in one line.
func (r *SkewReport) Line() string {
	var compared, differ, inFlight int
	var maxLag time.Duration
	for _, f := range r.Features {
		compared += f.Compared
		differ += f.Differ
		inFlight += f.InFlight
		maxLag = max(maxLag, f.MaxLag)
	}
	s := fmt.Sprintf("%d of %d served feature values differ from offline (%d predictions; %d in flight", differ, compared, r.Predictions, inFlight)
	if inFlight > 0 {
		s += fmt.Sprintf(", max lag %s", maxLag)
	}
	s += ")"
	if r.Later > 0 {
		s += fmt.Sprintf("; %d newer predictions wait for the archive", r.Later)
	}
	return s
}

func (r *SkewReport) String() string {
	s := r.Report.String()
	switch {
	case r.Completeness.Through.IsZero():
		s += "archive completeness not checked (no --kafka-brokers): predictions whose features need records the archiver has not written yet show as skew\n"
	case r.Completeness.Bound != "":
		s += fmt.Sprintf("archive complete through %s (bound by %s); %d later predictions not checked\n",
			r.Completeness.Through.UTC().Format(time.RFC3339Nano), r.Completeness.Bound, r.Later)
	default:
		s += "archive complete: every source partition is archived to its end\n"
	}
	return s
}

// Validate names the first missing field.
func (j SkewJob) Validate() error {
	switch {
	case j.Model == "":
		return errors.New("--model: required")
	case j.FeaturesDir == "":
		return errors.New("--features-dir: required")
	case j.ModelsDir == "":
		return errors.New("--models: required (the model repository)")
	case j.Archive == "":
		return errors.New("--offline: required (the archive URL)")
	case !j.Since.IsZero() && !j.Until.IsZero() && !j.Until.After(j.Since):
		return fmt.Errorf("--until %s is not after --since %s", j.Until.Format(time.RFC3339), j.Since.Format(time.RFC3339))
	}
	return nil
}

// RunSkew computes the skew report.
func RunSkew(ctx context.Context, j SkewJob) (*SkewReport, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	views, err := featurespec.LoadDir(j.FeaturesDir)
	if err != nil {
		return nil, err
	}
	configs, err := modelConfigs(j.ModelsDir, j.Model)
	if err != nil {
		return nil, err
	}
	arch, err := archive.Open(ctx, j.Archive)
	if err != nil {
		return nil, err
	}
	defer func() { _ = arch.Close() }()
	preds, err := loadPredictions(ctx, arch, j.Model, j.Since, j.Until)
	if err != nil {
		return nil, err
	}
	out := &SkewReport{}
	if len(j.KafkaBrokers) > 0 {
		if out.Completeness, err = ArchivedThrough(ctx, arch, j.KafkaBrokers, sourceTopics(views, configs), time.Now()); err != nil {
			return nil, fmt.Errorf("archive completeness (--kafka-brokers %v; empty skips the check): %w", j.KafkaBrokers, err)
		}
		through := out.Completeness.Through.UnixMilli()
		kept := preds[:0]
		for _, p := range preds {
			if p.TimeMs <= through {
				kept = append(kept, p)
			} else {
				out.Later++
			}
		}
		preds = kept
	}
	out.Report, err = skew.Compute(ctx, skew.Request{Views: views, Configs: configs, Predictions: preds, History: ArchiveHistory(arch),
		Partitions: j.Partitions, Examples: j.Examples})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sourceTopics are the source topics of the views the model's inputs read.
func sourceTopics(views []*featurespec.View, configs map[string]*modelrepo.Config) []string {
	byName := map[string]*featurespec.View{}
	for _, v := range views {
		byName[v.Name] = v
	}
	var topics []string
	seen := map[string]bool{}
	for _, c := range configs {
		for _, in := range c.Inputs {
			view, _, _ := strings.Cut(in.Feature, ":")
			if v := byName[view]; v != nil && !seen[v.Source.Topic] {
				seen[v.Source.Topic] = true
				topics = append(topics, v.Source.Topic)
			}
		}
	}
	slices.Sort(topics)
	return topics
}

// modelConfigs reads a model's config.yaml files: the model's own ("")
// and any version's (models/<model>/<version>/config.yaml).
func modelConfigs(dir, model string) (map[string]*modelrepo.Config, error) {
	if !filepath.IsLocal(model) {
		return nil, fmt.Errorf("--model %q: not a model name", model)
	}
	root := filepath.Join(dir, model)
	out := map[string]*modelrepo.Config{}
	read := func(version, path string) error {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		c, err := modelrepo.ParseConfig(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out[version] = c
		return nil
	}
	if err := read("", filepath.Join(root, "config.yaml")); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", model, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := read(e.Name(), filepath.Join(root, e.Name(), "config.yaml")); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("model %q: no config.yaml in %s", model, root)
	}
	return out, nil
}

// loadPredictions reads the model's archived predictions made in
// [since, until).
func loadPredictions(ctx context.Context, arch *archive.Archive, model string, since, until time.Time) ([]predlog.Prediction, error) {
	var out []predlog.Prediction
	err := scanPredictions(ctx, arch, func(p predlog.Prediction) error {
		if p.Model == model && inRange(time.UnixMilli(p.TimeMs), since, until) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}
