package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/tributary-ml/tributary/services/offline"
)

// importCommand: `tributary import --topic T FILE` loads history (CSV or
// Parquet source rows) into the offline archive.
func importCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: tributary import --topic T [flags] FILE\n\nLoads history older than Kafka's retention (CSV with a header row, or flat Parquet; one source row\nper record) into the offline archive, as records of topic T in partition -1 (see services/offline/README.md).\n\n")
		fs.PrintDefaults()
	}
	def := offline.DefaultConfig()
	cfg := offline.ImportConfig{Offline: def.Offline, Features: def.Features}
	fs.StringVar(&cfg.Topic, "topic", "", "the topic the rows belong to (required)")
	fs.StringVar(&cfg.Offline, "offline", cfg.Offline, "archive URL: file:///dir, s3://bucket?region=R, gs://bucket")
	fs.StringVar(&cfg.Features, "features", cfg.Features, "feature views directory: a view of the topic gives the time and key columns and event times (empty: none)")
	fs.StringVar(&cfg.TimeColumn, "time-column", "", "column with each row's time, RFC 3339 or Unix ms (default: the view's event_time field)")
	fs.StringVar(&cfg.KeyColumn, "key-column", "", "column used as the record key (default: the view's first join key)")
	fs.IntVar(&cfg.RowsPerFile, "rows-per-file", 100_000, "rows per archive file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || cfg.Topic == "" {
		fs.Usage()
		return 2
	}
	cfg.File = fs.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := offline.Import(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "import: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "imported %d rows of %s into %s: partition -1, offsets %d-%d, %d files\n", res.Rows, cfg.Topic, cfg.Offline, res.First, res.Last, len(res.Files))
	return 0
}
