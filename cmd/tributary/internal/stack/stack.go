// Package stack wires the five services and the embedded Kafka broker into
// one process: `tributary dev` and the end-to-end test both use it, with the
// same service code as the production binaries.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
	"github.com/tributary-ml/tributary/services/offline"
)

// Config configures the stack.
type Config struct {
	// FreePorts binds every listener (Kafka included) to a free port instead
	// of the defaults of DESIGN.md §4, for tests.
	FreePorts bool
	// Addrs overrides listen addresses, keyed "<service>.admin-addr" or
	// "<service>.grpc-addr" (for example "ingest.admin-addr").
	Addrs map[string]string
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
	// OTLPEndpoint (host:port) receives every service's traces and
	// metrics over OTLP/gRPC; empty sends none.
	OTLPEndpoint string
	// SpanExporter receives every service's spans (tests).
	SpanExporter sdktrace.SpanExporter
	// ArchiveRollInterval is the offline archiver's --roll-interval (0: its
	// default); tests make it short.
	ArchiveRollInterval time.Duration
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
	Offline       *offline.Service
	// OfflineURL is the archive's URL (<data-dir>/offline).
	OfflineURL string

	// released is set by the first of Run and Close: the one that releases.
	released atomic.Bool
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
	var err error
	ok := false
	defer func() {
		if !ok {
			// The services built so far never run: release their listeners
			// and stores, then stop the broker they were given.
			if cerr := s.Close(); cerr != nil {
				log.Warn("release the services built before the failure", "err", cerr)
			}
		}
	}()
	addrOf := func(svc, flag, def string) string {
		if a, ok := cfg.Addrs[svc+"."+flag]; ok {
			return a
		}
		if cfg.FreePorts {
			return "127.0.0.1:0"
		}
		return def
	}
	svcLog := func(name string) *slog.Logger { return log.With("service", name) }

	fs := featureserver.DefaultConfig()
	fs.Common.KafkaBrokers, fs.Common.LogLevel = s.brokers, cfg.LogLevel
	fs.Common.OTLPEndpoint, fs.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
	fs.Common.AdminAddr = addrOf("featureserver", "admin-addr", fs.Common.AdminAddr)
	fs.Common.GRPCAddr = addrOf("featureserver", "grpc-addr", fs.Common.GRPCAddr)
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
	fz.Common.OTLPEndpoint, fz.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
	fz.Common.AdminAddr = addrOf("featurizer", "admin-addr", fz.Common.AdminAddr)
	fz.Features = cfg.FeaturesDir
	if s.Featurizer, err = featurizer.New(ctx, fz, featurizer.Deps{Log: svcLog("featurizer")}); err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}

	mt := metrics.DefaultConfig()
	mt.Common.KafkaBrokers, mt.Common.LogLevel = s.brokers, cfg.LogLevel
	mt.Common.OTLPEndpoint, mt.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
	mt.Common.AdminAddr = addrOf("metrics", "admin-addr", mt.Common.AdminAddr)
	mt.Common.GRPCAddr = addrOf("metrics", "grpc-addr", mt.Common.GRPCAddr)
	mt.Models = cfg.ModelsDir
	if s.Metrics, err = metrics.New(ctx, mt, metrics.Deps{Log: svcLog("metrics")}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	// The archive of the sources, predictions and labels, under the data
	// directory: the demo's history to build training sets from.
	of := offline.DefaultConfig()
	of.Common.KafkaBrokers, of.Common.LogLevel = s.brokers, cfg.LogLevel
	of.Common.OTLPEndpoint, of.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
	of.Common.AdminAddr = addrOf("offline", "admin-addr", of.Common.AdminAddr)
	of.Common.GRPCAddr = addrOf("offline", "grpc-addr", of.Common.GRPCAddr)
	of.Features = cfg.FeaturesDir
	if cfg.ArchiveRollInterval > 0 {
		of.RollInterval = cfg.ArchiveRollInterval
	}
	offlineDir, err := filepath.Abs(filepath.Join(cfg.DataDir, "offline"))
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	of.Offline = "file://" + filepath.ToSlash(offlineDir)
	s.OfflineURL = of.Offline
	if s.Offline, err = offline.New(ctx, of, offline.Deps{Log: svcLog("offline")}); err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}

	ms := modelserver.DefaultConfig()
	ms.Common.KafkaBrokers, ms.Common.LogLevel = s.brokers, cfg.LogLevel
	ms.Common.OTLPEndpoint, ms.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
	ms.Common.AdminAddr = addrOf("modelserver", "admin-addr", ms.Common.AdminAddr)
	ms.Common.GRPCAddr = addrOf("modelserver", "grpc-addr", ms.Common.GRPCAddr)
	ms.Models, ms.FeatureserverAddr, ms.MetricsAddr = cfg.ModelsDir, s.Featureserver.GRPCAddr(), s.Metrics.GRPCAddr()
	if s.Modelserver, err = modelserver.New(ctx, ms, modelserver.Deps{Log: svcLog("modelserver")}); err != nil {
		return nil, fmt.Errorf("modelserver: %w", err)
	}

	if cfg.PostgresDSN != "" {
		in := ingest.DefaultConfig()
		in.Common.KafkaBrokers, in.Common.LogLevel = s.brokers, cfg.LogLevel
		in.Common.OTLPEndpoint, in.Common.SpanExporter = cfg.OTLPEndpoint, cfg.SpanExporter
		in.Common.AdminAddr = addrOf("ingest", "admin-addr", in.Common.AdminAddr)
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
		"offline":       s.Offline.AdminAddr(),
	}
	if s.Ingest != nil {
		m["ingest"] = s.Ingest.AdminAddr()
	}
	return m
}

// Close releases a stack that will not run: every service built (their
// listeners, stores and clients) and the broker. After Run started it does
// nothing: Run releases everything when it returns.
func (s *Stack) Close() error {
	if !s.released.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	// Reverse build order: the modelserver holds connections to the others.
	if s.Ingest != nil {
		errs = append(errs, s.Ingest.Close())
	}
	if s.Modelserver != nil {
		errs = append(errs, s.Modelserver.Close())
	}
	if s.Offline != nil {
		errs = append(errs, s.Offline.Close())
	}
	if s.Metrics != nil {
		errs = append(errs, s.Metrics.Close())
	}
	if s.Featurizer != nil {
		errs = append(errs, s.Featurizer.Close())
	}
	if s.Featureserver != nil {
		errs = append(errs, s.Featureserver.Close())
	}
	if s.Kafka != nil {
		s.Kafka.Close()
	}
	return errors.Join(errs...)
}

// Run runs every service until ctx ends or one fails, then stops the broker.
func (s *Stack) Run(ctx context.Context) error {
	if !s.released.CompareAndSwap(false, true) {
		return errors.New("stack closed before it ran")
	}
	if s.Kafka != nil {
		defer s.Kafka.Close()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Featureserver.Run(gctx) })
	g.Go(func() error { return s.Featurizer.Run(gctx) })
	g.Go(func() error { return s.Modelserver.Run(gctx) })
	g.Go(func() error { return s.Metrics.Run(gctx) })
	g.Go(func() error { return s.Offline.Run(gctx) })
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
