// Package stack wires the five services and the embedded Kafka broker into
// one process: `tributary dev` and the end-to-end test both use it, with the
// same service code as the production binaries.
package stack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
)

// Config configures the stack.
type Config struct {
	// FreePorts binds every listener (Kafka included) to a free port instead
	// of the defaults of DESIGN.md §4, for tests.
	FreePorts bool
	// DataDir holds the embedded stores and the broker's log.
	DataDir string
	// PostgresDSN is the database ingest captures; empty runs without CDC.
	PostgresDSN string
	// Tables ingest captures; Slot and Publication name its replication
	// slot and publication (defaults when empty).
	Tables      string
	Slot        string
	Publication string
	// FeaturesDir and ModelsDir are the example's feature views and model repository.
	FeaturesDir string
	ModelsDir   string
	LogLevel    string
	Log         *slog.Logger
	// KafkaBrokers, when set, is an external Kafka cluster (comma-separated
	// bootstrap brokers) the services use; no embedded broker is started.
	KafkaBrokers string
	// ScyllaHosts, when set, puts the featureserver's tiles in this
	// ScyllaDB (or any CQL server, e.g. the Cassandra of `make infra-up`),
	// keyspace ScyllaKeyspace (default tributary), instead of the embedded store.
	ScyllaHosts    string
	ScyllaKeyspace string
}

// Stack is the started stack; Run runs it.
type Stack struct {
	// Kafka is the embedded broker; nil with an external cluster.
	Kafka         *kafkabroker.Broker
	brokers       string
	Ingest        *ingest.Service
	Featurizer    *featurizer.Service
	Featureserver *featureserver.Service
	Modelserver   *modelserver.Service
	Metrics       *metrics.Service
}

// Start starts the broker and builds every service (binding their ports).
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	s := &Stack{brokers: cfg.KafkaBrokers}
	if cfg.KafkaBrokers == "" {
		kcfg := kafkabroker.DefaultConfig()
		kcfg.DataDir = filepath.Join(cfg.DataDir, "kafka")
		if cfg.FreePorts {
			kcfg.Port = 0
		}
		broker, err := kafkabroker.Start(kcfg, log.With("service", "kafka"))
		if err != nil {
			return nil, err
		}
		s.Kafka, s.brokers = broker, broker.Addr()
	}
	ok := false
	defer func() {
		if !ok && s.Kafka != nil {
			s.Kafka.Close()
		}
	}()
	var err error
	addr := func(def string) string {
		if cfg.FreePorts {
			return "127.0.0.1:0"
		}
		return def
	}
	svcLog := func(name string) *slog.Logger { return log.With("service", name) }

	fs := featureserver.DefaultConfig()
	fs.Common.KafkaBrokers, fs.Common.LogLevel = s.brokers, cfg.LogLevel
	fs.Common.AdminAddr, fs.Common.GRPCAddr = addr(fs.Common.AdminAddr), addr(fs.Common.GRPCAddr)
	fs.Features, fs.DataDir = cfg.FeaturesDir, filepath.Join(cfg.DataDir, "featureserver")
	if cfg.ScyllaHosts != "" {
		fs.Store, fs.ScyllaHosts = featureserver.StoreScylla, cfg.ScyllaHosts
		if cfg.ScyllaKeyspace != "" {
			fs.ScyllaKeyspace = cfg.ScyllaKeyspace
		}
	}
	if s.Featureserver, err = featureserver.New(ctx, fs, featureserver.Deps{Log: svcLog("featureserver")}); err != nil {
		return nil, fmt.Errorf("featureserver: %w", err)
	}

	fz := featurizer.DefaultConfig()
	fz.Common.KafkaBrokers, fz.Common.LogLevel = s.brokers, cfg.LogLevel
	fz.Common.AdminAddr = addr(fz.Common.AdminAddr)
	fz.Features = cfg.FeaturesDir
	if s.Featurizer, err = featurizer.New(ctx, fz, featurizer.Deps{Log: svcLog("featurizer")}); err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}

	mt := metrics.DefaultConfig()
	mt.Common.KafkaBrokers, mt.Common.LogLevel = s.brokers, cfg.LogLevel
	mt.Common.AdminAddr, mt.Common.GRPCAddr = addr(mt.Common.AdminAddr), addr(mt.Common.GRPCAddr)
	mt.Models = cfg.ModelsDir
	if s.Metrics, err = metrics.New(ctx, mt, metrics.Deps{Log: svcLog("metrics")}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	ms := modelserver.DefaultConfig()
	ms.Common.KafkaBrokers, ms.Common.LogLevel = s.brokers, cfg.LogLevel
	ms.Common.AdminAddr, ms.Common.GRPCAddr = addr(ms.Common.AdminAddr), addr(ms.Common.GRPCAddr)
	ms.Models, ms.FeatureserverAddr, ms.MetricsAddr = cfg.ModelsDir, s.Featureserver.GRPCAddr(), s.Metrics.GRPCAddr()
	if s.Modelserver, err = modelserver.New(ctx, ms, modelserver.Deps{Log: svcLog("modelserver")}); err != nil {
		return nil, fmt.Errorf("modelserver: %w", err)
	}

	if cfg.PostgresDSN != "" {
		in := ingest.DefaultConfig()
		in.Common.KafkaBrokers, in.Common.LogLevel = s.brokers, cfg.LogLevel
		in.Common.AdminAddr = addr(in.Common.AdminAddr)
		in.PostgresDSN = cfg.PostgresDSN
		if cfg.Tables != "" {
			in.Tables = cfg.Tables
		}
		if cfg.Slot != "" {
			in.Slot = cfg.Slot
		}
		if cfg.Publication != "" {
			in.Publication = cfg.Publication
		}
		if s.Ingest, err = ingest.New(ctx, in, ingest.Deps{Log: svcLog("ingest")}); err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
	}
	ok = true
	return s, nil
}

// KafkaAddr is the bootstrap broker list the services use.
func (s *Stack) KafkaAddr() string { return s.brokers }

// AdminAddrs lists each running service's admin address by name.
func (s *Stack) AdminAddrs() map[string]string {
	m := map[string]string{
		"featurizer":    s.Featurizer.AdminAddr(),
		"featureserver": s.Featureserver.AdminAddr(),
		"modelserver":   s.Modelserver.AdminAddr(),
		"metrics":       s.Metrics.AdminAddr(),
	}
	if s.Ingest != nil {
		m["ingest"] = s.Ingest.AdminAddr()
	}
	return m
}

// Run runs every service until ctx ends or one fails, then stops the
// embedded broker.
func (s *Stack) Run(ctx context.Context) error {
	if s.Kafka != nil {
		defer s.Kafka.Close()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Featureserver.Run(gctx) })
	g.Go(func() error { return s.Featurizer.Run(gctx) })
	g.Go(func() error { return s.Modelserver.Run(gctx) })
	g.Go(func() error { return s.Metrics.Run(gctx) })
	if s.Ingest != nil {
		g.Go(func() error { return s.Ingest.Run(gctx) })
	}
	return g.Wait()
}

// WaitReady polls every service's /readyz until all answer 200 or ctx ends.
func (s *Stack) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	for name, a := range s.AdminAddrs() {
		for {
			resp, err := client.Get("http://" + a + "/readyz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready at %s: %w", name, a, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
