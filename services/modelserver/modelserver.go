// Package modelserver is the modelserver service: model serving: Predict and the Open Inference Protocol, features from the featureserver.
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package modelserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/proto/gen/go/inference"
	servingv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/serving/v1"

	"github.com/tributary-ml/tributary/services/modelserver/internal/adaptive"
	"github.com/tributary-ml/tributary/services/modelserver/internal/core"
	"github.com/tributary-ml/tributary/services/modelserver/internal/featureclient"
	"github.com/tributary-ml/tributary/services/modelserver/internal/grpcapi"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
	"github.com/tributary-ml/tributary/services/modelserver/internal/oiprest"
	"github.com/tributary-ml/tributary/services/modelserver/internal/predlogger"
	"github.com/tributary-ml/tributary/services/modelserver/internal/remote"
	"github.com/tributary-ml/tributary/services/modelserver/internal/repository"
)

// Name is the service name in logs and metrics.
const Name = "modelserver"

// Usage describes the service in one line.
const Usage = "model serving: Predict and the Open Inference Protocol, features from the featureserver"

// Config is the service's configuration.
type Config struct {
	Common            config.Common
	Models            string
	FeatureserverAddr string
	// ModelsPollInterval is how often the repository is checked for new or
	// changed versions (0 disables hot reload).
	ModelsPollInterval time.Duration
	// MaxConcurrent bounds requests in flight; more get ResourceExhausted.
	MaxConcurrent int
	// PredictionLogBuffer bounds the prediction records waiting for Kafka.
	PredictionLogBuffer int
	// MetricsAddr is the metrics service's gRPC address, read by adaptive
	// ensembles ("" disables adaptive weights).
	MetricsAddr string
	// EnsembleRefresh is how often adaptive ensemble weights are recomputed.
	EnsembleRefresh time.Duration
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8084",
			GRPCAddr:     "127.0.0.1:9102",
			LogLevel:     "info",
		},
		Models:              "examples/fraud/models",
		FeatureserverAddr:   "127.0.0.1:9101",
		ModelsPollInterval:  5 * time.Second,
		MaxConcurrent:       512,
		PredictionLogBuffer: 10000,
		MetricsAddr:         "127.0.0.1:9103",
		EnsembleRefresh:     30 * time.Second,
	}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	fs.StringVar(&c.Models, "models", c.Models, "model repository directory")
	fs.StringVar(&c.FeatureserverAddr, "featureserver-addr", c.FeatureserverAddr, "featureserver gRPC address")
	fs.DurationVar(&c.ModelsPollInterval, "models-poll-interval", c.ModelsPollInterval, "how often to check the model repository for new versions (0 disables hot reload)")
	fs.IntVar(&c.MaxConcurrent, "max-concurrent-requests", c.MaxConcurrent, "prediction requests served at once; more are refused with RESOURCE_EXHAUSTED")
	fs.IntVar(&c.PredictionLogBuffer, "prediction-log-buffer", c.PredictionLogBuffer, "prediction log records that may wait for Kafka before new ones are dropped")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "metrics service gRPC address, read by adaptive ensembles (empty disables adaptive weights)")
	fs.DurationVar(&c.EnsembleRefresh, "ensemble-refresh", c.EnsembleRefresh, "how often adaptive ensemble weights are recomputed from the metrics service")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(true); err != nil {
		return err
	}
	if c.Models == "" {
		return errors.New("models: required (the model repository directory)")
	}
	if err := config.CheckAddr("featureserver-addr", c.FeatureserverAddr); err != nil {
		return err
	}
	if c.ModelsPollInterval < 0 {
		return fmt.Errorf("models-poll-interval: %s is negative", c.ModelsPollInterval)
	}
	if c.MaxConcurrent < 1 {
		return fmt.Errorf("max-concurrent-requests: %d; must be at least 1", c.MaxConcurrent)
	}
	if c.PredictionLogBuffer < 1 {
		return fmt.Errorf("prediction-log-buffer: %d; must be at least 1", c.PredictionLogBuffer)
	}
	if c.MetricsAddr != "" {
		if err := config.CheckAddr("metrics-addr", c.MetricsAddr); err != nil {
			return err
		}
		if c.EnsembleRefresh <= 0 {
			return fmt.Errorf("ensemble-refresh: %s; must be positive", c.EnsembleRefresh)
		}
	}
	return nil
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
	// Clock stamps predictions (time.Now when nil).
	Clock func() time.Time
}

// Service is a built, not yet running, modelserver.
type Service struct {
	base      *service.Base
	cfg       Config
	repo      *repository.Repository
	features  *featureclient.Client
	producer  *kafka.Producer
	plog      *predlogger.Logger
	predictor *core.Predictor
	tuner     *adaptive.Tuner
}

// New validates cfg, loads the model repository and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Checked before any listener is bound, so a wrong path leaves nothing open.
	if st, err := os.Stat(cfg.Models); err != nil {
		return nil, fmt.Errorf("models: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("models: %s is not a directory", cfg.Models)
	}
	base, err := service.New(ctx, Name, cfg.Common, true, deps.Log)
	if err != nil {
		return nil, err
	}
	s := &Service{base: base, cfg: cfg}
	// After the servers drained (the prediction log flushed), or by Close.
	base.OnRelease(s.close)
	if err := s.build(ctx, deps); err != nil {
		return nil, errors.Join(err, base.Close())
	}
	return s, nil
}

func (s *Service) build(ctx context.Context, deps Deps) error {
	log, meter := s.base.Log, s.base.Tel.Meter
	loads, err := meter.Int64Counter("tributary_modelserver_model_loads",
		metric.WithDescription("model version load attempts (load and warm-up prediction), by model, version and result"))
	if err != nil {
		return err
	}
	loaders := model.Loaders()
	loaders["remote"] = remote.Load
	s.repo, err = repository.Open(ctx, s.cfg.Models, repository.Options{
		Loaders: loaders,
		Log:     log,
		OnLoad: func(name string, version int, err error) {
			result := "ok"
			if err != nil {
				result = "error"
			}
			loads.Add(context.Background(), 1, metric.WithAttributes(attribute.String("model", name),
				attribute.Int("version", version), attribute.String("result", result)))
		},
	})
	if err != nil {
		return err
	}
	for name, msg := range s.repo.Snapshot().Errors {
		log.Warn("model repository problem", "model", name, "err", msg)
	}
	if s.features, err = featureclient.Dial(s.cfg.FeatureserverAddr, s.base.Tel.Propagator); err != nil {
		return err
	}
	if s.producer, err = kafka.NewProducer(kafka.ProducerConfig{Brokers: s.cfg.Common.Brokers(), Topic: predlog.PredictionsTopic,
		Tracer: s.base.Tel.SpanTracer()}); err != nil {
		return fmt.Errorf("kafka-brokers: %w", err)
	}
	if s.plog, err = predlogger.New(s.producer, predlogger.Options{Buffer: s.cfg.PredictionLogBuffer, Meter: meter, Log: log,
		InFlight: func() int {
			if s.predictor == nil {
				return 0
			}
			return s.predictor.InFlight()
		}}); err != nil {
		return err
	}
	popts := core.Options{MaxConcurrent: s.cfg.MaxConcurrent, Clock: deps.Clock, Meter: meter, Log: log}
	if s.cfg.MetricsAddr != "" {
		if s.tuner, err = adaptive.New(s.cfg.MetricsAddr, s.repo, meter, log); err != nil {
			return err
		}
		popts.Weights = s.tuner
	}
	if s.predictor, err = core.NewPredictor(s.repo, s.features, s.plog, popts); err != nil {
		return err
	}
	ready := func() bool { ok, _ := s.base.Admin.Ready(); return ok }
	servingv1.RegisterPredictionServiceServer(s.base.GRPC.Server, &grpcapi.Serving{P: s.predictor})
	inference.RegisterGRPCInferenceServiceServer(s.base.GRPC.Server, &grpcapi.Inference{P: s.predictor, Ready: ready})
	rest := &oiprest.Handler{P: s.predictor, Ready: ready}
	for pattern, h := range rest.Routes() {
		s.base.Admin.Handle(pattern, h)
	}
	s.base.Admin.Handle("GET /v2/repository/index", repositoryIndex(s.repo))
	s.base.Admin.AddCheck("models", s.modelsCheck)
	s.base.Admin.AddDetail("models", s.modelsDetail)
	if _, err := meter.Int64ObservableGauge("tributary_modelserver_model_load_failing",
		metric.WithDescription("1 while a model's newest artifact or config is refused (an older version may still serve), by model"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			snap := s.repo.Snapshot()
			for _, name := range snap.Names() {
				v := int64(0)
				if snap.Errors[name] != "" {
					v = 1
				}
				o.Observe(v, metric.WithAttributes(attribute.String("model", name)))
			}
			for name := range snap.Errors {
				if _, ok := snap.Get(name); !ok {
					o.Observe(1, metric.WithAttributes(attribute.String("model", name)))
				}
			}
			return nil
		})); err != nil {
		return err
	}
	return nil
}

// modelsDetail names the models that serve an older version because their
// newest artifact or config was refused.
func (s *Service) modelsDetail() string {
	snap := s.repo.Snapshot()
	var out []string
	for _, name := range snap.Names() {
		if msg := snap.Errors[name]; msg != "" {
			m, _ := snap.Get(name)
			out = append(out, fmt.Sprintf("%s serves version %d; refused: %s", name, m.Latest, strings.ReplaceAll(msg, "\n", "; ")))
		}
	}
	return strings.Join(out, " | ")
}

// modelsCheck fails while a model of the repository has no servable version.
func (s *Service) modelsCheck() error {
	snap := s.repo.Snapshot()
	var bad []string
	for name, msg := range snap.Errors {
		if _, ok := snap.Get(name); !ok {
			bad = append(bad, fmt.Sprintf("%s not loaded: %s", name, strings.ReplaceAll(msg, "\n", "; ")))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return errors.New(strings.Join(bad, "; "))
}

// GRPCAddr is the bound gRPC address.
func (s *Service) GRPCAddr() string { return s.base.GRPCAddr() }

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// Run runs the service until ctx ends: it serves, reloads the model
// repository and writes the prediction log; on shutdown the servers drain,
// then the prediction log is flushed and the producer closed.
func (s *Service) Run(ctx context.Context) error {
	workers := []func(context.Context) error{s.plog.Run}
	if s.cfg.ModelsPollInterval > 0 {
		workers = append(workers, func(ctx context.Context) error { return s.repo.Watch(ctx, s.cfg.ModelsPollInterval) })
	}
	if s.tuner != nil {
		workers = append(workers, func(ctx context.Context) error { return s.tuner.Run(ctx, s.cfg.EnsembleRefresh) })
	}
	return s.base.Run(ctx, workers...)
}

// Close releases a service that will not run: its connections, producer,
// model repository and listeners. After Run started it does nothing.
func (s *Service) Close() error { return s.base.Close() }

func (s *Service) close() error {
	var errs []error
	if s.producer != nil {
		if err := s.producer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close prediction log producer: %w", err))
		}
	}
	if s.repo != nil {
		if err := s.repo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close model repository: %w", err))
		}
	}
	if s.tuner != nil {
		if err := s.tuner.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close metrics service connection: %w", err))
		}
	}
	if s.features != nil {
		if err := s.features.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close featureserver connection: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Command is the service as a command line (binary and `tributary modelserver`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
