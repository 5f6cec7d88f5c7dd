package offline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
	"github.com/tributary-ml/tributary/services/offline/internal/spine"
)

// TrainingSetJob is one `tributary training-set` run: a spine file and
// feature refs in, a training set file out, computed from the archive.
type TrainingSetJob struct {
	// FeaturesDir is the directory of feature view YAML.
	FeaturesDir string
	// Archive is the archive's URL (file:///..., s3://...).
	Archive string
	// Spine is the spine file (.csv or .parquet).
	Spine string
	// Features are refs "view:feature" or "view:*".
	Features []string
	// Out is the output file (.csv or .parquet).
	Out string
	// EventTimeOnly counts records by event time, whenever they arrived.
	EventTimeOnly bool
	// Shard is "i/N" (empty: the whole spine).
	Shard string
	// Partitions is the featurizer's --repartition-partitions (0: its default).
	Partitions int
}

// Validate names the first missing or bad field.
func (j TrainingSetJob) Validate() error {
	switch {
	case j.FeaturesDir == "":
		return errors.New("--features-dir: required (the directory of feature view YAML)")
	case j.Archive == "":
		return errors.New("--offline: required (the archive URL, e.g. file:///path/to/offline)")
	case j.Spine == "":
		return errors.New("--spine: required (a .csv or .parquet file with event_timestamp and the views' join keys)")
	case len(j.Features) == 0:
		return errors.New("--features: required (a comma list of view:feature or view:*)")
	case j.Out == "":
		return errors.New("--out: required (a .csv or .parquet file)")
	}
	if _, err := spine.FormatOf(j.Out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := spine.FormatOf(j.Spine); err != nil {
		return fmt.Errorf("--spine: %w", err)
	}
	if j.Shard != "" {
		if _, err := pointintime.ParseShard(j.Shard); err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
	}
	return nil
}

// TrainingSetSummary says what a run computed.
type TrainingSetSummary struct {
	Rows, Features int
	// Records is how many archived records were replayed.
	Records int64
	// NotFound and Stale count feature values by status.
	NotFound, Stale int64
	Elapsed         time.Duration
}

func (s TrainingSetSummary) String() string {
	return fmt.Sprintf("%d rows × %d features from %d archived records in %s (%d values not found, %d stale)",
		s.Rows, s.Features, s.Records, s.Elapsed.Round(time.Millisecond), s.NotFound, s.Stale)
}

// RunTrainingSet computes the job's training set and writes it to j.Out.
func RunTrainingSet(ctx context.Context, j TrainingSetJob) (TrainingSetSummary, error) {
	start := time.Now()
	if err := j.Validate(); err != nil {
		return TrainingSetSummary{}, err
	}
	views, err := featurespec.LoadDir(j.FeaturesDir)
	if err != nil {
		return TrainingSetSummary{}, err
	}
	if _, err := pointintime.ResolveRefs(views, j.Features); err != nil {
		return TrainingSetSummary{}, err
	}
	var shard pointintime.Shard
	if j.Shard != "" {
		if shard, err = pointintime.ParseShard(j.Shard); err != nil {
			return TrainingSetSummary{}, err
		}
	}
	sp, err := spine.Read(j.Spine)
	if err != nil {
		return TrainingSetSummary{}, err
	}
	if err := RequireJoinKeys(sp, views, j.Features); err != nil {
		return TrainingSetSummary{}, err
	}
	arch, err := archive.Open(ctx, j.Archive)
	if err != nil {
		return TrainingSetSummary{}, err
	}
	defer func() { _ = arch.Close() }()
	res, err := pointintime.Compute(ctx, pointintime.Request{
		Views: views, Refs: j.Features, Spine: sp, History: ArchiveHistory(arch),
		EventTimeOnly: j.EventTimeOnly, Shard: shard, Partitions: j.Partitions,
	})
	if err != nil {
		return TrainingSetSummary{}, err
	}
	if err := spine.Write(j.Out, sp, res); err != nil {
		return TrainingSetSummary{}, err
	}
	sum := summarize(res)
	sum.Elapsed = time.Since(start)
	return sum, nil
}

func summarize(res *pointintime.Result) TrainingSetSummary {
	s := TrainingSetSummary{Rows: len(res.Rows), Features: len(res.Features), Records: res.Stats.Records}
	s.NotFound, s.Stale = res.Statuses()
	return s
}

// ArchiveHistory reads the archive as the point-in-time engine's history: each
// archived record with its Kafka record time as the arrival time.
func ArchiveHistory(a *archive.Archive) pointintime.History {
	return pointintime.HistoryFunc(func(ctx context.Context, topic string, fn func(aggregate.Record) error) error {
		return a.Scan(ctx, topic, func(r *archive.Row) error {
			return fn(aggregate.Record{Topic: r.Topic, Partition: int(r.Partition), Offset: r.Offset, TimeMs: r.ArrivalMs, Value: r.Value})
		})
	})
}

// SplitRefs splits a comma list (feature refs, brokers), dropping empty items.
func SplitRefs(s string) []string {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}
