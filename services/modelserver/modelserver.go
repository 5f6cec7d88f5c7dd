// Package modelserver is the modelserver service: model serving: Predict and the Open Inference Protocol, features from the featureserver.
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package modelserver

import (
	"context"
	"flag"
	"log/slog"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/service"
)

// Name is the service name in logs and metrics.
const Name = "modelserver"

// Usage describes the service in one line.
const Usage = "model serving: Predict and the Open Inference Protocol, features from the featureserver"

// Config is the service's configuration.
type Config struct {
	Common config.Common
	Models string
	FeatureserverAddr string
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
		Models: "examples/fraud/models",
		FeatureserverAddr: "127.0.0.1:9101",
	}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	fs.StringVar(&c.Models, "models", c.Models, "model repository directory")
	fs.StringVar(&c.FeatureserverAddr, "featureserver-addr", c.FeatureserverAddr, "featureserver gRPC address")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	return c.Common.Validate(true)
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
}

// Service is a built, not yet running, modelserver.
type Service struct {
	base *service.Base
	cfg  Config
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
	return &Service{base: base, cfg: cfg}, nil
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx)
}

// Run builds and runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Command is the service as a command line (binary and `tributary modelserver`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.Command{
		Name:     Name,
		Usage:    Usage,
		Register: cfg.RegisterFlags,
		Run:      func(ctx context.Context) error { return Run(ctx, cfg, Deps{}) },
	}
}
