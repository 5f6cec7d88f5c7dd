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
