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

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/service"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/embedded"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/modelrepo"
	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/pinotstore"
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
		Store:           StoreEmbedded,
		PinotBroker:     "http://127.0.0.1:8099",
		PinotController: "http://127.0.0.1:9000",
		Models:          "examples/fraud/models",
		LabelTTL:        time.Hour,
		FlushInterval:   time.Second,
	}
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
	base    *service.Base
	cfg     Config
	log     *slog.Logger
	catalog *modelrepo.Repo
	agg     *core.Aggregator
	store   *embedded.Store
	reader  core.RowReader
	ready   atomic.Bool
	handler atomic.Pointer[stream.Handler]
}

// New validates cfg and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := service.New(ctx, Name, cfg.Common, true, deps.Log)
	if err != nil {
		return nil, err
	}
	s := &Service{base: base, cfg: cfg, log: base.Log}
	s.catalog = modelrepo.New(cfg.Models, s.log)
	s.agg = core.NewAggregator(core.AggregatorConfig{LabelTTL: cfg.LabelTTL}, s.catalog)
	s.store = embedded.New()
	switch cfg.Store {
	case StorePinot:
		ps, err := pinotstore.New(cfg.PinotBroker, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("pinot-broker: %w", err)
		}
		s.reader = ps
	default:
		s.reader = s.store
	}
	metricsv1.RegisterMetricsServiceServer(base.GRPC.Server, grpcapi.New(s.reader, s.catalog, deps.Now, 0))
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
	return s.base.Run(ctx, s.consume)
}

// consume creates missing topics, restores the published rows, then folds
// predictions and labels until ctx ends.
func (s *Service) consume(ctx context.Context) error {
	brokers := s.cfg.Common.Brokers()
	if err := kafka.EnsureTopics(ctx, brokers,
		kafka.TopicSpec{Name: predlog.PredictionsTopic},
		kafka.TopicSpec{Name: predlog.LabelsTopic},
		kafka.TopicSpec{Name: core.Topic, Compacted: true},
	); err != nil {
		return err
	}
	rows, err := stream.Restore(ctx, brokers, core.Topic, s.log)
	if err != nil {
		return err
	}
	s.agg.Restore(rows)
	var writers []core.RowWriter
	if s.cfg.Store == StoreEmbedded {
		// Pinot ingests metrics.model_minute itself.
		writers = append(writers, s.store)
		if err := s.store.Upsert(ctx, rows); err != nil {
			return err
		}
	}
	s.log.Info("restored rows", "topic", core.Topic, "rows", len(rows))
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: core.Topic})
	if err != nil {
		return err
	}
	h := stream.NewHandler(s.agg, prod, writers, nil, s.log)
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
		Topics:         []string{predlog.PredictionsTopic, predlog.LabelsTopic},
		CommitInterval: s.cfg.FlushInterval, Log: s.log,
	})
	if err != nil {
		return err
	}
	s.ready.Store(true)
	err = cons.Run(ctx, h)
	if cerr := prod.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close producer: %w", cerr))
	}
	return err
}

// Run builds and runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Command is the service as a command line (binary and `tributary metrics`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.Command{
		Name:     Name,
		Usage:    Usage,
		Register: cfg.RegisterFlags,
		Run:      func(ctx context.Context) error { return Run(ctx, cfg, Deps{}) },
	}
}
