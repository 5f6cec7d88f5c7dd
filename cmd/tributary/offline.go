package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/offline"
)

// trainingSetCommand: `tributary training-set`, a point-in-time training
// set from the archive.
func trainingSetCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("training-set", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var j offline.TrainingSetJob
	var refs string
	fs.StringVar(&j.FeaturesDir, "features-dir", "examples/fraud/features", "directory of feature view YAML")
	fs.StringVar(&j.Archive, "offline", "", "the archive: a URL (file:///dir, s3://bucket/prefix, gs://...) or a local directory, e.g. the demo's <data-dir>/offline")
	fs.StringVar(&j.Spine, "spine", "", "spine file (.csv or .parquet): event_timestamp (RFC 3339 or Unix ms), the views' join keys, any other columns (passed through)")
	fs.StringVar(&refs, "features", "", "comma list of feature refs: view:feature or view:*")
	fs.StringVar(&j.Out, "out", "", "output file (.csv or .parquet): the spine's columns, then view__feature and view__feature__status per feature")
	fs.BoolVar(&j.EventTimeOnly, "event-time-only", false, "count every record whose event time is at or before the row's event_timestamp, whenever it arrived (history imported after the fact); the default counts only records that had arrived by then, as online")
	fs.StringVar(&j.Shard, "shard", "", "i/N: compute only the entities of shard i of N (by entity hash); the N outputs concatenate to the whole")
	fs.IntVar(&j.Partitions, "repartition-partitions", 0, "the featurizer's --repartition-partitions, if changed from its default (tiles expire per partition)")
	var p offline.PredictionSetJob
	var since, until, labelCols string
	fs.StringVar(&p.Model, "from-predictions", "", "MODEL: build the spine from the archived prediction log of this model (one row per served and canary prediction: entity keys, event_timestamp, prediction_id, version, variant, role, served__<input>, output__<name>, label, label_time_ms), instead of --spine")
	fs.StringVar(&since, "since", "", "with --from-predictions: predictions made at or after this time (RFC 3339, or a duration ago such as 1h)")
	fs.StringVar(&until, "until", "", "with --from-predictions: predictions made before this time (RFC 3339, or a duration ago); labels are joined whatever their time")
	fs.BoolVar(&p.IncludeShadow, "include-shadow", false, "with --from-predictions: add the model's shadow predictions (labels joined through parent_id)")
	fs.StringVar(&p.LabelsCDCTopic, "labels-cdc-topic", offline.DefaultConfig().LabelsCDCTopic, "with --from-predictions: the archived change events of a labels table, read besides the labels topic (empty: none)")
	fs.StringVar(&labelCols, "labels-cdc-columns", predlog.DefaultLabelColumns().String(), "with --from-predictions: the labels table's columns, id=<col>,label=<col>,time=<col>")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "training-set: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	j.Features = offline.SplitRefs(refs)
	if p.Model != "" {
		return predictionSetCommand(p, j, since, until, labelCols, stdout, stderr)
	}
	j.Archive = archiveURL(j.Archive)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := offline.RunTrainingSet(ctx, j)
	if err != nil {
		fmt.Fprintf(stderr, "training-set: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %s\n", j.Out, sum)
	return 0
}

// predictionSetCommand: `tributary training-set --from-predictions`.
func predictionSetCommand(p offline.PredictionSetJob, j offline.TrainingSetJob, since, until, labelCols string, stdout, stderr io.Writer) int {
	if j.Spine != "" || j.Shard != "" {
		fmt.Fprintln(stderr, "training-set: --from-predictions builds the spine itself: drop --spine and --shard")
		return 2
	}
	var err error
	now := time.Now()
	if p.Since, err = parseWhen(since, now); err != nil {
		fmt.Fprintf(stderr, "training-set: --since: %v\n", err)
		return 2
	}
	if p.Until, err = parseWhen(until, now); err != nil {
		fmt.Fprintf(stderr, "training-set: --until: %v\n", err)
		return 2
	}
	if p.LabelColumns, err = predlog.ParseLabelColumns(labelCols); err != nil {
		fmt.Fprintf(stderr, "training-set: --labels-cdc-columns: %v\n", err)
		return 2
	}
	p.Archive, p.Out, p.Features, p.FeaturesDir = archiveURL(j.Archive), j.Out, j.Features, j.FeaturesDir
	p.EventTimeOnly, p.Partitions = j.EventTimeOnly, j.Partitions
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := offline.RunPredictionTrainingSet(ctx, p)
	if err != nil {
		fmt.Fprintf(stderr, "training-set: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %s\n", p.Out, sum)
	return 0
}

// archiveURL turns a local directory into a file:// URL; URLs pass as
// they are.
func archiveURL(s string) string {
	if s == "" || strings.Contains(s, "://") {
		return s
	}
	if abs, err := filepath.Abs(s); err == nil {
		s = abs
	}
	return "file://" + filepath.ToSlash(s)
}

// skewCommand: `tributary skew`, the features a model was served against
// the same features computed offline.
func skewCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skew", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var j offline.SkewJob
	var since, until string
	fs.StringVar(&j.Model, "model", "", "the model whose predictions are checked")
	fs.StringVar(&j.FeaturesDir, "features-dir", "examples/fraud/features", "directory of feature view YAML")
	fs.StringVar(&j.ModelsDir, "models", "examples/fraud/models", "the model repository (its config.yaml says which feature each input is)")
	fs.StringVar(&j.Archive, "offline", "", "the archive: a URL (file:///dir, s3://bucket/prefix) or a local directory, e.g. the demo's <data-dir>/offline")
	fs.StringVar(&since, "since", "", "only predictions made at or after this time: RFC 3339, or a duration ago (e.g. 15m)")
	fs.StringVar(&until, "until", "", "only predictions made before this time: RFC 3339, or a duration ago")
	fs.IntVar(&j.Examples, "examples", 3, "differing values shown per feature")
	brokers := fs.String("kafka-brokers", "127.0.0.1:9092", "Kafka, asked how far the archive is complete (predictions after that are not checked); empty skips the check")
	fs.IntVar(&j.Partitions, "repartition-partitions", 0, "the featurizer's --repartition-partitions, if changed from its default")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	now := time.Now()
	if j.Since, err = parseWhen(since, now); err != nil {
		fmt.Fprintf(stderr, "skew: --since: %v\n", err)
		return 2
	}
	if j.Until, err = parseWhen(until, now); err != nil {
		fmt.Fprintf(stderr, "skew: --until: %v\n", err)
		return 2
	}
	j.Archive = archiveURL(j.Archive)
	j.KafkaBrokers = offline.SplitRefs(*brokers)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := offline.RunSkew(ctx, j)
	if err != nil {
		fmt.Fprintf(stderr, "skew: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, rep)
	return 0
}

// parseWhen reads an RFC 3339 time or a duration before now; empty is
// the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-12-01T10:00:00Z) nor a duration (15m)", s)
	}
	return t, nil
}
