// Package offline is the offline service: it archives source history as
// Parquet in object storage (internal/archive, internal/archiver); the
// point-in-time training sets, skew reports and backfill read that archive.
// New is the one wiring place; the service binary and `tributary dev` both
// call it.
package offline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
	"github.com/tributary-ml/tributary/services/offline/internal/grpcapi"
)

// Name is the service name in logs and metrics.
const Name = "offline"

// Usage describes the service in one line.
const Usage = "archive of source history as Parquet; point-in-time training sets over gRPC"

// Config is the service's configuration.
type Config struct {
	Common config.Common
	// Features is the directory of feature view YAML; every view's source
	// topic is archived.
	Features string
	// Offline is the archive's URL: file:///dir, s3://bucket?region=...,
	// gs://bucket (a prefix= query parameter puts it under a prefix).
	Offline string
	// Topics are archived besides the views' sources, predictions and labels.
	Topics string
	// LabelsCDCTopic is a labels table's change events (as the metrics
	// service reads them); empty: only the labels topic.
	LabelsCDCTopic string
	// RollBytes and RollInterval close a file at this size or age.
	RollBytes    int64
	RollInterval time.Duration
	// Retention deletes files of days older than this; 0 keeps them.
	Retention time.Duration
	// CompactInterval is how often small files of finished days are
	// merged; 0 disables compaction.
	CompactInterval time.Duration
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8086",
			GRPCAddr:     "127.0.0.1:9104",
			LogLevel:     "info",
		},
		Features:        "examples/fraud/features",
		Offline:         "file://./data/offline",
		LabelsCDCTopic:  cdc.Topic("public", "labels"),
		RollBytes:       64 << 20,
		RollInterval:    time.Minute,
		CompactInterval: time.Hour,
	}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	fs.StringVar(&c.Features, "features", c.Features, "directory of feature view YAML files (their source topics are archived)")
	fs.StringVar(&c.Offline, "offline", c.Offline, "archive URL: file:///dir, s3://bucket?region=R, gs://bucket (add prefix=path/ for a prefix)")
	fs.StringVar(&c.Topics, "topics", c.Topics, "comma-separated extra topics to archive (besides the views' sources, predictions and labels)")
	fs.StringVar(&c.LabelsCDCTopic, "labels-cdc-topic", c.LabelsCDCTopic, "topic of a labels table's change events, archived as a labels source (empty: none)")
	fs.Int64Var(&c.RollBytes, "roll-bytes", c.RollBytes, "close an archive file when its records reach this many bytes")
	fs.DurationVar(&c.RollInterval, "roll-interval", c.RollInterval, "close an archive file this long after its first record")
	fs.DurationVar(&c.CompactInterval, "compact-interval", c.CompactInterval, "how often small archive files of finished days are merged into files of up to --roll-bytes (0 disables)")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "delete archive files of days that ended longer ago than this (0 keeps them)")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(true); err != nil {
		return err
	}
	if c.Features == "" {
		return errors.New("features: must name a directory of feature views")
	}
	u, err := url.Parse(c.Offline)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("offline: %q is not a URL (file:///dir, s3://bucket, gs://bucket)", c.Offline)
	}
	for _, t := range config.SplitList(c.Topics) {
		if !validTopic(t) {
			return fmt.Errorf("topics: %q is not a Kafka topic name", t)
		}
	}
	if c.LabelsCDCTopic != "" && !validTopic(c.LabelsCDCTopic) {
		return fmt.Errorf("labels-cdc-topic: %q is not a Kafka topic name", c.LabelsCDCTopic)
	}
	if c.RollBytes < 1<<10 {
		return fmt.Errorf("roll-bytes: %d is below 1024", c.RollBytes)
	}
	if c.RollInterval < time.Second {
		return fmt.Errorf("roll-interval: %s is below 1s", c.RollInterval)
	}
	if c.CompactInterval < 0 {
		return fmt.Errorf("compact-interval: %s must not be negative", c.CompactInterval)
	}
	if c.Retention < 0 {
		return fmt.Errorf("retention: %s must not be negative", c.Retention)
	}
	return nil
}

// validTopic is Kafka's rule for topic names.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ArchivedTopics lists what the service archives: every view's source, predictions,
// labels (and the labels table's change events), and the extras.
func (c Config) ArchivedTopics(views []*featurespec.View) []string {
	ts := []string{predlog.PredictionsTopic, predlog.LabelsTopic}
	if c.LabelsCDCTopic != "" {
		ts = append(ts, c.LabelsCDCTopic)
	}
	for _, v := range views {
		ts = append(ts, v.Source.Topic)
	}
	ts = append(ts, config.SplitList(c.Topics)...)
	slices.Sort(ts)
	return slices.Compact(ts)
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
}

// Service is a built, not yet running, offline service.
type Service struct {
	base     *service.Base
	cfg      Config
	log      *slog.Logger
	arc      *archive.Archive
	archiver *archiver.Archiver
	running  atomic.Bool
}

// New validates cfg, opens the archive and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	views, err := featurespec.LoadDir(cfg.Features)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	arc, err := archive.Create(ctx, cfg.Offline)
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	arcOwned := true
	defer func() {
		if err != nil && arcOwned {
			err = errors.Join(err, arc.Close())
		}
	}()
	base, err := service.New(ctx, Name, cfg.Common, true, deps.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, base.Close())
		}
	}()
	s := &Service{base: base, cfg: cfg, log: base.Log, arc: arc}
	// From here the archive is released with the service (by Run when it
	// ends, by Close when it never runs).
	base.OnRelease(func() error {
		if err := arc.Close(); err != nil {
			return fmt.Errorf("close archive: %w", err)
		}
		return nil
	})
	arcOwned = false
	grpcapi.New(func() []*featurespec.View { return views }, ArchiveHistory(arc), grpcapi.DefaultLimits()).Register(base.GRPC.Server)
	topics := cfg.ArchivedTopics(views)
	compactEvery := cfg.CompactInterval
	if compactEvery == 0 {
		compactEvery = -1 // disabled
	}
	s.archiver, err = archiver.New(archiver.Config{
		Brokers: cfg.Common.Brokers(), Topics: topics, Views: views,
		RollBytes: cfg.RollBytes, RollInterval: cfg.RollInterval, Retention: cfg.Retention,
		CompactEvery: compactEvery, Log: s.log,
	}, arc)
	if err != nil {
		return nil, err
	}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	base.Admin.AddCheck("archiver", func() error {
		if !s.running.Load() {
			return errors.New("archiver not running")
		}
		return nil
	})
	s.log.Info("archive", "url", cfg.Offline, "topics", strings.Join(topics, ","))
	return s, nil
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// GRPCAddr is the bound gRPC address.
func (s *Service) GRPCAddr() string { return s.base.GRPCAddr() }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx, func(ctx context.Context) error {
		s.running.Store(true)
		defer s.running.Store(false)
		return s.archiver.Run(ctx)
	})
}

// Close releases a service that will not run (safe at any time; after
// Run started it does nothing).
func (s *Service) Close() error { return s.base.Close() }

// registerMetrics exports the archiver's counters on /metrics.
func (s *Service) registerMetrics() error {
	m := s.base.Tel.Meter
	counters := map[string]struct {
		desc string
		get  func(archiver.Stats) int64
	}{
		"tributary_offline_rows":            {"records written to the archive", func(st archiver.Stats) int64 { return st.Rows }},
		"tributary_offline_files":           {"archive files written", func(st archiver.Stats) int64 { return st.Files }},
		"tributary_offline_bytes":           {"bytes of archive files written", func(st archiver.Stats) int64 { return st.Bytes }},
		"tributary_offline_files_expired":   {"archive files deleted by retention", func(st archiver.Stats) int64 { return st.Deleted }},
		"tributary_offline_records_lost":    {"records Kafka's retention removed before they were archived", func(st archiver.Stats) int64 { return st.Lost }},
		"tributary_offline_files_compacted": {"small archive files merged into bigger ones", func(st archiver.Stats) int64 { return st.Compacted }},
	}
	for name, c := range counters {
		get := c.get
		if _, err := m.Int64ObservableCounter(name, metric.WithDescription(c.desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(get(s.archiver.Stats()))
				return nil
			})); err != nil {
			return err
		}
	}
	if _, err := m.Int64ObservableGauge("tributary_offline_pending_rows",
		metric.WithDescription("records read and buffered, not yet in an archive file"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(s.archiver.Stats().Pending)
			return nil
		})); err != nil {
		return err
	}
	_, err := m.Int64ObservableGauge("tributary_kafka_consumer_lag",
		metric.WithDescription("records behind the partitions' high watermarks, summed"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(s.archiver.Lag())
			return nil
		}))
	return err
}

// Command is the service as a command line (binary and `tributary offline`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
