// Package metrics is the metrics service: model health: aggregates predictions and labels per model and minute.
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package metrics

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/service"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/embedded"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/modelrepo"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/pinotstore"
	"github.com/tributary-ml/tributary/services/metrics/internal/alerts"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
	"github.com/tributary-ml/tributary/services/metrics/internal/grpcapi"
	"github.com/tributary-ml/tributary/services/metrics/internal/stream"
)

// Name is the service name in logs and metrics.
const Name = "metrics"

// Usage describes the service in one line.
const Usage = "model health: aggregates predictions and labels per model and minute"

// Store kinds.
const (
	StoreEmbedded = "embedded"
	StorePinot    = "pinot"
)

// Config is the service's configuration.
type Config struct {
	Common          config.Common
	Store           string
	PinotBroker     string
	PinotController string
	Models          string
	// LabelTTL is how long a prediction waits for its label (event time).
	LabelTTL time.Duration
	// FlushInterval is how often changed rows are published and offsets committed.
	FlushInterval time.Duration
	// Retention is how much history the embedded store keeps.
	Retention time.Duration
	// AlertPSI is the drift alert threshold (0 disables drift alerts).
	AlertPSI float64
	// AlertMinRequests is the scored predictions a minute needs for drift alerts.
	AlertMinRequests int64
	// AlertP99Ms is "ms" or "model=ms,...,*=ms" (empty: no latency alerts).
	AlertP99Ms string
	// AlertWebhook receives alerts as JSON POSTs when set.
	AlertWebhook string
	// LabelsCDCTopic carries labels as change events of a labels table
	// (captured by ingest); empty: only the `labels` topic.
	LabelsCDCTopic string
	// LabelsCDCColumns maps the table's columns: "id=...,label=...,time=...".
	LabelsCDCColumns string
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8085",
			GRPCAddr:     "127.0.0.1:9103",
			LogLevel:     "info",
		},
		Store:            StoreEmbedded,
		PinotBroker:      "http://127.0.0.1:8099",
		PinotController:  "http://127.0.0.1:9000",
		Models:           "examples/fraud/models",
		LabelTTL:         time.Hour,
		FlushInterval:    time.Second,
		Retention:        7 * 24 * time.Hour,
		AlertPSI:         0.25,
		AlertMinRequests: 100,
		LabelsCDCTopic:   cdc.Topic("public", "labels"),
		LabelsCDCColumns: predlog.DefaultLabelColumns().String(),
	}
}

// Topics returns the topics the service creates for c, with their partitions
// and cleanup policy: predictions, labels, the labels table's change events
// when configured, and metrics.model_minute (compacted: Pinot upserts it and
// the service restores itself from it). Deployment manifests are checked
// against it.
func (c Config) Topics() []kafka.TopicSpec {
	topics := []kafka.TopicSpec{
		{Name: predlog.PredictionsTopic},
		{Name: predlog.LabelsTopic},
		{Name: core.Topic, Compacted: true},
	}
	if c.LabelsCDCTopic != "" {
		// Ingest creates it too; creating it here lets the service start first.
		topics = append(topics, kafka.TopicSpec{Name: c.LabelsCDCTopic})
	}
	return topics
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	fs.StringVar(&c.Store, "store", c.Store, "metrics store: embedded or pinot")
	fs.StringVar(&c.PinotBroker, "pinot-broker", c.PinotBroker, "Pinot broker URL (store=pinot)")
	fs.StringVar(&c.PinotController, "pinot-controller", c.PinotController, "Pinot controller URL (store=pinot)")
	fs.StringVar(&c.Models, "models", c.Models, "model repository directory (training baselines for drift)")
	fs.DurationVar(&c.LabelTTL, "label-ttl", c.LabelTTL, "how long (event time) a prediction waits for its label")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "how often changed minute rows are published and offsets committed")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "history the embedded store keeps (store=embedded; Pinot has its own retention)")
	fs.Float64Var(&c.AlertPSI, "alert-psi", c.AlertPSI, "alert when a minute's score or feature PSI exceeds this (0 disables)")
	fs.Int64Var(&c.AlertMinRequests, "alert-min-requests", c.AlertMinRequests, "scored predictions a minute needs before its drift can alert")
	fs.StringVar(&c.AlertP99Ms, "alert-p99-ms", c.AlertP99Ms, "alert when p99 latency exceeds this: ms for all models, or model=ms,...,*=ms (empty disables)")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", c.AlertWebhook, "URL that receives each alert as a JSON POST (empty disables)")
	fs.StringVar(&c.LabelsCDCTopic, "labels-cdc-topic", c.LabelsCDCTopic, "topic of a labels table's change events (Debezium envelope, from ingest) read as a second label source (empty disables)")
	fs.StringVar(&c.LabelsCDCColumns, "labels-cdc-columns", c.LabelsCDCColumns, "the labels table's columns: id=<prediction id>,label=<outcome: bool or number>,time=<observed at; empty: commit time>")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(true); err != nil {
		return err
	}
	switch c.Store {
	case StoreEmbedded:
	case StorePinot:
		for field, v := range map[string]string{"pinot-broker": c.PinotBroker, "pinot-controller": c.PinotController} {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s: %q is not an http(s) URL", field, v)
			}
		}
	default:
		return fmt.Errorf("store: %q is not embedded or pinot", c.Store)
	}
	if c.LabelTTL <= 0 {
		return fmt.Errorf("label-ttl: %s must be positive", c.LabelTTL)
	}
	if c.FlushInterval <= 0 {
		return fmt.Errorf("flush-interval: %s must be positive", c.FlushInterval)
	}
	if c.Retention <= 0 {
		return fmt.Errorf("retention: %s must be positive", c.Retention)
	}
	if c.AlertPSI < 0 {
		return fmt.Errorf("alert-psi: %v must not be negative", c.AlertPSI)
	}
	if c.AlertMinRequests < 0 {
		return fmt.Errorf("alert-min-requests: %d must not be negative", c.AlertMinRequests)
	}
	if _, err := alerts.ParseP99(c.AlertP99Ms); err != nil {
		return fmt.Errorf("alert-p99-ms: %w", err)
	}
	if _, err := predlog.ParseLabelColumns(c.LabelsCDCColumns); err != nil {
		return fmt.Errorf("labels-cdc-columns: %w", err)
	}
	switch c.LabelsCDCTopic {
	case predlog.LabelsTopic, predlog.PredictionsTopic, core.Topic:
		return fmt.Errorf("labels-cdc-topic: %q is one of the service's other topics", c.LabelsCDCTopic)
	}
	if c.AlertWebhook != "" {
		u, err := url.Parse(c.AlertWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("alert-webhook: %q is not an http(s) URL", c.AlertWebhook)
		}
	}
	return nil
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
	// Now is the clock for default query ranges (time.Now when nil).
	Now func() time.Time
}

// Service is a built, not yet running, metrics.
type Service struct {
	base     *service.Base
	cfg      Config
	log      *slog.Logger
	catalog  *modelrepo.Repo
	agg      *core.Aggregator
	store    *embedded.Store
	reader   core.RowReader
	alerter  *alerts.Alerter
	ready    atomic.Bool
	handler  atomic.Pointer[stream.Handler]
	consumer atomic.Pointer[kafka.Consumer]
}

// New validates cfg and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := service.New(ctx, Name, cfg.Common, true, deps.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, base.Close())
		}
	}()
	s := &Service{base: base, cfg: cfg, log: base.Log}
	s.catalog = modelrepo.New(cfg.Models, s.log)
	s.agg = core.NewAggregator(core.AggregatorConfig{LabelTTL: cfg.LabelTTL}, s.catalog)
	s.store = embedded.New(cfg.Retention)
	switch cfg.Store {
	case StorePinot:
		ps, err := pinotstore.New(cfg.PinotBroker, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("pinot-broker: %w", err)
		}
		s.reader = ps
		check := pinotstore.TableCheck{Controller: cfg.PinotController, Table: pinotstore.Table}
		base.Admin.AddCheck("pinot", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return check.Check(ctx)
		})
	default:
		s.reader = s.store
	}
	p99, _ := alerts.ParseP99(cfg.AlertP99Ms) // checked by Validate
	s.alerter, err = alerts.New(alerts.Config{
		PSI: cfg.AlertPSI, MinRequests: cfg.AlertMinRequests, P99Ms: p99, Webhook: cfg.AlertWebhook,
	}, s.log, base.Tel.Meter, nil)
	if err != nil {
		return nil, err
	}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	metricsv1.RegisterMetricsServiceServer(base.GRPC.Server, grpcapi.New(s.reader, s.catalog, s.catalog, deps.Now, 0))
	base.Admin.AddCheck("restore", func() error {
		if !s.ready.Load() {
			return errors.New("rows not yet restored from " + core.Topic)
		}
		return nil
	})
	return s, nil
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// GRPCAddr is the bound gRPC address.
func (s *Service) GRPCAddr() string { return s.base.GRPCAddr() }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx, s.consume, s.alerter.Run)
}

// Close releases a service that will not run (its listeners). After Run
// started it does nothing.
func (s *Service) Close() error { return s.base.Close() }

// consume creates missing topics, restores the published rows, then folds
// predictions and labels until ctx ends.
func (s *Service) consume(ctx context.Context) error {
	// Whatever the way out, the alerter sends what is queued and stops.
	defer s.alerter.Close()
	brokers := s.cfg.Common.Brokers()
	if err := kafka.EnsureTopics(ctx, brokers, s.cfg.Topics()...); err != nil {
		return err
	}
	rows, err := stream.Restore(ctx, brokers, core.Topic, s.log)
	if err != nil {
		return err
	}
	s.agg.Restore(rows)
	// The restored rows were checked for alerts before the restart.
	s.alerter.Seed(rows)
	var writers []core.RowWriter
	if s.cfg.Store == StoreEmbedded {
		// Pinot ingests metrics.model_minute itself.
		writers = append(writers, s.store)
		if err := s.store.Upsert(ctx, rows); err != nil {
			return err
		}
	}
	s.log.Info("restored rows", "topic", core.Topic, "rows", len(rows))
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: core.Topic, Tracer: s.base.Tel.SpanTracer()})
	if err != nil {
		return err
	}
	h := stream.NewHandler(s.agg, prod, writers, func(ctx context.Context, rows []core.Row) { s.alerter.Check(ctx, rows) }, s.log)
	if s.cfg.LabelsCDCTopic != "" {
		cols, _ := predlog.ParseLabelColumns(s.cfg.LabelsCDCColumns) // checked by Validate
		h.ConsumeCDCLabels(s.cfg.LabelsCDCTopic, cols)
	}
	s.handler.Store(h)
	// Producer timestamps are wall-clock times; a minute of slack covers
	// clock skew between producers and this host.
	since := time.Now().Add(-s.cfg.LabelTTL - time.Minute)
	np, nl, err := h.Rebuild(ctx, brokers, since)
	if err != nil {
		return err
	}
	s.log.Info("rebuilt label join", "predictions", np, "labels", nl, "since", since)
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: stream.GroupID,
		Topics:         append([]string{predlog.PredictionsTopic}, h.LabelTopics()...),
		CommitInterval: s.cfg.FlushInterval, Log: s.log, Tracer: s.base.Tel.SpanTracer(),
	})
	if err != nil {
		return err
	}
	s.consumer.Store(cons)
	s.ready.Store(true)
	err = cons.Run(ctx, h)
	if cerr := prod.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close producer: %w", cerr))
	}
	return err
}

// registerMetrics exports the aggregator's counters on /metrics.
func (s *Service) registerMetrics() error {
	m := s.base.Tel.Meter
	counters := map[string]struct {
		desc string
		get  func(stream.Stats) int64
	}{
		"tributary_metrics_predictions":      {"prediction records consumed", func(st stream.Stats) int64 { return st.Predictions }},
		"tributary_metrics_labels":           {"label records consumed", func(st stream.Stats) int64 { return st.Labels }},
		"tributary_metrics_invalid_records":  {"records skipped because they did not decode", func(st stream.Stats) int64 { return st.Invalid }},
		"tributary_metrics_duplicates":       {"redelivered records recognised and not counted again", func(st stream.Stats) int64 { return st.Duplicates }},
		"tributary_metrics_late_predictions": {"predictions older than the label TTL behind the newest, dropped", func(st stream.Stats) int64 { return st.LatePredictions }},
		"tributary_metrics_expired_labels":   {"labels that never met their prediction within the label TTL", func(st stream.Stats) int64 { return st.ExpiredLabels }},
		"tributary_metrics_rows_published":   {"minute rows published to " + core.Topic, func(st stream.Stats) int64 { return st.Published }},
	}
	for name, c := range counters {
		get := c.get
		if _, err := m.Int64ObservableCounter(name, metric.WithDescription(c.desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				if h := s.handler.Load(); h != nil {
					o.Observe(get(h.Stats()))
				}
				return nil
			})); err != nil {
			return err
		}
	}
	if _, err := m.Int64ObservableGauge("tributary_kafka_consumer_lag",
		metric.WithDescription("records behind the partition's high watermark"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if c := s.consumer.Load(); c != nil {
				o.Observe(c.Lag())
			}
			return nil
		})); err != nil {
		return err
	}
	_, err := m.Int64ObservableGauge("tributary_metrics_pending_joins",
		metric.WithDescription("predictions and labels waiting to be joined"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if h := s.handler.Load(); h != nil {
				o.Observe(int64(h.Stats().Pending))
			}
			return nil
		}))
	return err
}

// Command is the service as a command line (binary and `tributary metrics`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
