package offline

import (
	"context"

	"github.com/tributary-ml/tributary/libs/featurespec"

	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
	"github.com/tributary-ml/tributary/services/offline/internal/spine"
)

// The point-in-time training-set API, for the CLI and the gRPC API (both
// outside this module, so they cannot import the internal packages). See
// internal/pointintime and the README's "Training sets".

// TrainingSetRequest is one training-set computation: views, refs
// (view:feature or view:*), the spine, the history of the source topics,
// EventTimeOnly, Shard and the featurizer's repartition partition count.
type TrainingSetRequest = pointintime.Request

// TrainingSet is a computed training set: the resolved features, the
// spine rows kept (all, or the shard's), and their values (value, status
// and event time as GetOnlineFeatures answers them).
type TrainingSet = pointintime.Result

// History yields the archived records of a source topic, each partition's
// in offset order, with the Kafka record time as the arrival time.
type History = pointintime.History

// HistoryFunc adapts a scan function (such as the archive reader's) to
// History.
type HistoryFunc = pointintime.HistoryFunc

// HistoryRecords is an in-memory History.
type HistoryRecords = pointintime.Records

// Spine is the rows a training set is computed for.
type Spine = pointintime.Spine

// Shard is part i of N of a training set (entity-hash partitioned).
type Shard = pointintime.Shard

// SpineTable is a spine read from a CSV or Parquet file.
type SpineTable = spine.Table

// ParseShard parses "i/N".
func ParseShard(s string) (Shard, error) { return pointintime.ParseShard(s) }

// ComputeTrainingSet computes a point-in-time training set.
func ComputeTrainingSet(ctx context.Context, req TrainingSetRequest) (*TrainingSet, error) {
	return pointintime.Compute(ctx, req)
}

// ReadSpine reads a spine file (.csv or .parquet) with an event_timestamp
// column. Join key columns are checked by RequireJoinKeys.
func ReadSpine(path string) (*SpineTable, error) { return spine.Read(path) }

// RequireJoinKeys checks, before computing, that the refs resolve and
// the spine has the join keys of their views, naming the bad ref or the
// file and the missing column.
func RequireJoinKeys(t *SpineTable, views []*featurespec.View, refs []string) error {
	feats, err := pointintime.ResolveRefs(views, refs)
	if err != nil {
		return err
	}
	for _, f := range feats {
		if err := t.RequireColumns("join key of feature view "+f.View.Name, f.View.Entity.JoinKeys...); err != nil {
			return err
		}
	}
	return nil
}

// WriteTrainingSet writes the spine's columns plus, per feature, the
// columns view__feature and view__feature__status, as CSV or Parquet by
// the extension of path.
func WriteTrainingSet(path string, t *SpineTable, set *TrainingSet) error {
	return spine.Write(path, t, set)
}
