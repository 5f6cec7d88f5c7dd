// Package featureserver is the featureserver service: the online feature server: stores tiles and answers GetOnlineFeatures.
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package featureserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/grpcapi"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/scylla"
	"github.com/tributary-ml/tributary/services/featureserver/internal/tileconsumer"
	"github.com/tributary-ml/tributary/services/featureserver/internal/viewwatch"
)

// Name is the service name in logs and metrics.
const Name = "featureserver"

// Usage describes the service in one line.
const Usage = "the online feature server: stores tiles and answers GetOnlineFeatures"

// GroupID is the consumer group reading features.tiles.
const GroupID = "tributary-featureserver"

// Store kinds.
const (
	StoreEmbedded = "embedded"
	StoreScylla   = "scylla"
)

// Config is the service's configuration.
type Config struct {
	Common         config.Common
	Features       string
	Store          string
	DataDir        string
	ScyllaHosts    string
	ScyllaKeyspace string
	// Scylla holds the remaining ScyllaDB settings (store=scylla).
	ScyllaReplication string
	ScyllaConsistency string
	ScyllaLocalDC     string
	ScyllaTimeout     time.Duration
	ScyllaRetries     int
	// ScyllaTileCacheMB bounds the decoded tiles kept to skip decoding
	// unchanged ones (encoded megabytes; 0 disables).
	ScyllaTileCacheMB int
	// ReloadInterval is how often the feature view files are checked for changes.
	ReloadInterval time.Duration
	// FlushInterval is the longest a consumed tile waits before it is
	// written and servable (and its offset committed).
	FlushInterval time.Duration
	// TilesPartitions is the partition count features.tiles is created
	// with when it does not exist.
	TilesPartitions int
	// MaxRequestBytes bounds the encoded size of a GetOnlineFeatures request.
	MaxRequestBytes int
	Limits          core.Limits
	// GCPercent is the garbage collector's GOGC for the process; negative
	// leaves the runtime's setting (the GOGC environment variable).
	GCPercent int
	// MemoryLimitMB is the runtime's soft memory limit for the process in
	// MiB; 0 leaves the runtime's setting (the GOMEMLIMIT environment variable).
	MemoryLimitMB int
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin port
	// (for profiling under the benchmark; off by default).
	Pprof bool
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8083",
			GRPCAddr:     "127.0.0.1:9101",
			LogLevel:     "info",
		},
		Features:          "examples/fraud/features",
		Store:             StoreEmbedded,
		DataDir:           "data/featureserver",
		ScyllaHosts:       "127.0.0.1:9042",
		ScyllaKeyspace:    "tributary",
		ScyllaReplication: scylla.DefaultConfig().Replication,
		ScyllaConsistency: scylla.DefaultConfig().Consistency,
		ScyllaTimeout:     scylla.DefaultConfig().Timeout,
		ScyllaRetries:     scylla.DefaultConfig().Retries,
		ScyllaTileCacheMB: int(scylla.DefaultConfig().TileCacheBytes >> 20),
		ReloadInterval:    2 * time.Second,
		FlushInterval:     50 * time.Millisecond,
		TilesPartitions:   4,
		MaxRequestBytes:   grpcapi.DefaultMaxRequestBytes,
		Limits:            defaultLimits(),
		GCPercent:         defaultGCPercent(),
	}
}

// DefaultGCPercent lets the heap grow to 5× the live tiles before a GC
// cycle: the index of the embedded store (or the ScyllaDB tile cache) is
// most of the live heap and every cycle marks all of it, while a request
// leaves little garbage; see README.md, "Garbage collection".
const DefaultGCPercent = 400

// defaultGCPercent is DefaultGCPercent unless the GOGC environment
// variable is set, which then wins.
func defaultGCPercent() int {
	if os.Getenv("GOGC") != "" {
		return -1
	}
	return DefaultGCPercent
}

// defaultLimits leaves FetchChunk 0: the store picks it (cheap embedded
// reads are batched per goroutine, ScyllaDB reads each get one).
func defaultLimits() core.Limits {
	l := core.DefaultLimits()
	l.FetchChunk = 0
	return l
}

// Topics returns the topics the service creates for c, with their partitions
// and cleanup policy: features.tiles, compacted. Deployment manifests are
// checked against it.
func (c Config) Topics() []kafka.TopicSpec {
	return []kafka.TopicSpec{{Name: tiles.Topic, Partitions: c.TilesPartitions, Compacted: true}}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	fs.StringVar(&c.Features, "features", c.Features, "directory of feature view YAML files")
	fs.StringVar(&c.Store, "store", c.Store, "online store: embedded or scylla")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded store")
	fs.StringVar(&c.ScyllaHosts, "scylla-hosts", c.ScyllaHosts, "comma-separated ScyllaDB hosts (store=scylla)")
	fs.StringVar(&c.ScyllaKeyspace, "scylla-keyspace", c.ScyllaKeyspace, "ScyllaDB keyspace (store=scylla)")
	fs.StringVar(&c.ScyllaReplication, "scylla-replication", c.ScyllaReplication, "replication map of the keyspace when it is created (store=scylla)")
	fs.StringVar(&c.ScyllaConsistency, "scylla-consistency", c.ScyllaConsistency, "consistency level of reads and writes (store=scylla)")
	fs.StringVar(&c.ScyllaLocalDC, "scylla-local-dc", c.ScyllaLocalDC, "data center to route to first; empty: any (store=scylla)")
	fs.DurationVar(&c.ScyllaTimeout, "scylla-timeout", c.ScyllaTimeout, "timeout of one ScyllaDB request (store=scylla)")
	fs.IntVar(&c.ScyllaRetries, "scylla-retries", c.ScyllaRetries, "retries of a failed idempotent ScyllaDB request (store=scylla)")
	fs.IntVar(&c.ScyllaTileCacheMB, "scylla-tile-cache-mb", c.ScyllaTileCacheMB, "encoded megabytes of decoded tiles kept so unchanged tiles are not decoded on every read, and merged windows can be cached (store=scylla); 0 disables")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", c.ReloadInterval, "how often feature view files are checked for changes")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest wait before consumed tiles are written and servable")
	fs.IntVar(&c.TilesPartitions, "tiles-partitions", c.TilesPartitions, "partitions of features.tiles when it is created")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", c.MaxRequestBytes, "largest GetOnlineFeatures request accepted, in bytes")
	fs.IntVar(&c.Limits.MaxRows, "max-rows", c.Limits.MaxRows, "most entity rows per request")
	fs.IntVar(&c.Limits.MaxFeatures, "max-features", c.Limits.MaxFeatures, "most feature references per request")
	fs.IntVar(&c.Limits.MaxValues, "max-values", c.Limits.MaxValues, "most rows × features per request")
	fs.IntVar(&c.Limits.MaxInFlight, "max-in-flight", c.Limits.MaxInFlight, "requests served at once; more get RESOURCE_EXHAUSTED")
	fs.IntVar(&c.Limits.FetchParallelism, "fetch-parallelism", c.Limits.FetchParallelism, "most concurrent store reads per request")
	fs.IntVar(&c.Limits.WindowCacheEntries, "window-cache-entries", c.Limits.WindowCacheEntries, "runs of tiles whose merged windows are cached (embedded store, or scylla with its tile cache); 0 disables")
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent, "GOGC of the process: heap growth over the live heap before a GC cycle, in percent; negative: the runtime's (GOGC environment variable)")
	fs.IntVar(&c.MemoryLimitMB, "memory-limit-mb", c.MemoryLimitMB, "soft memory limit of the process in MiB (GC runs more often near it; set it under a container limit); 0: the runtime's (GOMEMLIMIT environment variable)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve net/http/pprof under /debug/pprof/ on the admin port")
	fs.IntVar(&c.Limits.FetchChunk, "fetch-chunk", c.Limits.FetchChunk, "fewest store reads per concurrent reader of a request; 0: 32 for embedded, 1 for scylla")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(true); err != nil {
		return err
	}
	switch {
	case c.Features == "":
		return errors.New("features: a directory of feature view YAML files is required")
	case c.Store != StoreEmbedded && c.Store != StoreScylla:
		return fmt.Errorf("store: %q is not embedded or scylla", c.Store)
	case c.Store == StoreEmbedded && c.DataDir == "":
		return errors.New("data-dir: required with store=embedded")
	case c.ReloadInterval <= 0:
		return fmt.Errorf("reload-interval: %s, want a positive duration", c.ReloadInterval)
	case c.FlushInterval <= 0:
		return fmt.Errorf("flush-interval: %s, want a positive duration", c.FlushInterval)
	case c.TilesPartitions < 1:
		return fmt.Errorf("tiles-partitions: %d, want at least 1", c.TilesPartitions)
	case c.MaxRequestBytes < 1024:
		return fmt.Errorf("max-request-bytes: %d, want at least 1024", c.MaxRequestBytes)
	case c.Limits.FetchChunk < 0:
		return fmt.Errorf("fetch-chunk: %d, want 0 or more", c.Limits.FetchChunk)
	case c.GCPercent == 0:
		return errors.New("gc-percent: 0 would collect continuously; want a positive percentage, or negative for the runtime's setting")
	case c.MemoryLimitMB < 0:
		return fmt.Errorf("memory-limit-mb: %d, want 0 or more", c.MemoryLimitMB)
	}
	if c.Store == StoreScylla {
		if err := c.scylla(nil, nil).Validate(); err != nil {
			return err
		}
	}
	return c.limits().Validate()
}

// limits resolves the per-store defaults.
func (c Config) limits() core.Limits {
	l := c.Limits
	if l.FetchChunk == 0 {
		l.FetchChunk = 32
		if c.Store == StoreScylla {
			l.FetchChunk = 1
		}
	}
	return l
}

func (c Config) scylla(now func() time.Time, log *slog.Logger) scylla.Config {
	sc := scylla.DefaultConfig()
	sc.Hosts = config.SplitList(c.ScyllaHosts)
	sc.Keyspace = c.ScyllaKeyspace
	sc.Replication = c.ScyllaReplication
	sc.Consistency = c.ScyllaConsistency
	sc.LocalDC = c.ScyllaLocalDC
	sc.Timeout = c.ScyllaTimeout
	sc.Retries = c.ScyllaRetries
	sc.TileCacheBytes = int64(c.ScyllaTileCacheMB) << 20
	sc.Now, sc.Log = now, log
	return sc
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
	// Now is the clock requests are answered at; time.Now when nil.
	Now func() time.Time
}

// Service is a built, not yet running, featureserver.
type Service struct {
	base     *service.Base
	cfg      Config
	now      func() time.Time
	store    core.TileStore
	catalog  *core.Catalog
	watcher  *viewwatch.Watcher
	consumer *tileconsumer.Handler
}

// New validates cfg, loads the feature views, opens the store and binds
// the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	log := deps.Log
	if log == nil {
		log = config.NewLogger(cfg.Common.LogLevel, Name)
	}
	// Process-wide: with `tributary dev` this also applies to the services
	// running beside the featureserver.
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMB) << 20)
	}
	// Views and store come first: a failure here leaves no listener bound.
	watcher, catalog, err := viewwatch.Load(cfg.Features, log)
	if err != nil {
		return nil, err
	}
	store, err := openStore(ctx, cfg, now, log)
	if err != nil {
		return nil, err
	}
	// The feature service's codec sends answers already in wire form.
	base, err := service.New(ctx, Name, cfg.Common, true, log, grpcapi.ServerOptions()...)
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	online, err := core.NewOnline(store, catalog, now, cfg.limits())
	if err != nil {
		return nil, errors.Join(err, store.Close(), base.Close())
	}
	consumer, err := tileconsumer.New(store, catalog, now, base.Tel.Meter, base.Log)
	if err != nil {
		return nil, errors.Join(err, store.Close(), base.Close())
	}
	// Closed when Run's consumer committed its last offsets, or by Close.
	base.OnRelease(func() error {
		if err := store.Close(); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
		return nil
	})
	grpcapi.New(online, catalog, cfg.MaxRequestBytes).Register(base.GRPC.Server)
	base.Admin.AddCheck("feature-views", watcher.Err)
	if cfg.Pprof {
		base.Admin.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		base.Admin.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	}
	return &Service{base: base, cfg: cfg, now: now, store: store, catalog: catalog, watcher: watcher, consumer: consumer}, nil
}

func openStore(ctx context.Context, cfg Config, now func() time.Time, log *slog.Logger) (core.TileStore, error) {
	switch cfg.Store {
	case StoreEmbedded:
		return embedded.Open(cfg.DataDir, embedded.Options{Now: now, Log: log})
	case StoreScylla:
		return scylla.Open(ctx, cfg.scylla(now, log))
	default:
		return nil, fmt.Errorf("store: %q is not supported", cfg.Store)
	}
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// GRPCAddr is the bound gRPC address.
func (s *Service) GRPCAddr() string { return s.base.GRPCAddr() }

// Run runs the service until ctx ends, then closes the store after the
// consumer committed its last offsets.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx, s.consume, func(ctx context.Context) error {
		return s.watcher.Run(ctx, s.cfg.ReloadInterval)
	})
}

// Close releases a service that will not run: its store and listeners.
// After Run started it does nothing.
func (s *Service) Close() error { return s.base.Close() }

// consume writes tiles from features.tiles to the store until ctx ends.
func (s *Service) consume(ctx context.Context) error {
	brokers := s.cfg.Common.Brokers()
	for {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := kafka.EnsureTopics(tctx, brokers, s.cfg.Topics()...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.base.Log.Warn("ensure topic, retrying", "topic", tiles.Topic, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers:        brokers,
		GroupID:        GroupID,
		Topics:         []string{tiles.Topic},
		CommitInterval: s.cfg.FlushInterval,
		MaxWait:        s.cfg.FlushInterval,
		// Sampled tile records get a span that ends when the tile is servable.
		IgnoreTrace: true,
		Tracer:      s.base.Tel.SpanTracer(),
		Log:         s.base.Log,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, s.consumer)
}

// Command is the service as a command line (binary and `tributary featureserver`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
