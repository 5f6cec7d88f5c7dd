// Package featurizer is the featurizer service: stream feature computation from feature view YAML into tiles on features.tiles.
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package featurizer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer/internal/kafkaio"
)

// Name is the service name in logs and metrics.
const Name = "featurizer"

// Usage describes the service in one line.
const Usage = "stream feature computation from feature view YAML into tiles on features.tiles"

// GroupID is the consumer group of the source stage: every featurizer
// instance reads its share of the source topics' partitions and routes
// each row change to the repartition topic, keyed by the view's entity.
const GroupID = "tributary-featurizer"

// AggregateGroupID is the consumer group of the aggregation stage: every
// instance aggregates its share of the repartition topic's partitions,
// so all changes of one entity are aggregated by one instance.
const AggregateGroupID = "tributary-featurizer-aggregate"

// Config is the service's configuration.
type Config struct {
	Common   config.Common
	Features string
	// FlushInterval is how often changed tiles are emitted and source
	// offsets committed (tiles are coalesced in between).
	FlushInterval time.Duration
	// FlushEvery emits and commits after this many records within the interval.
	FlushEvery int
	// RepartitionPartitions is the partition count of the repartition
	// topic when the featurizer creates it: the most aggregation
	// instances that can share the work. Entities are spread over the
	// partitions by hash, so an existing topic's count must not change.
	RepartitionPartitions int
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8082",
			LogLevel:     "info",
		},
		Features:              "examples/fraud/features",
		FlushInterval:         25 * time.Millisecond,
		FlushEvery:            50000,
		RepartitionPartitions: 8,
	}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, false)
	fs.StringVar(&c.Features, "features", c.Features, "directory of feature view YAML files")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "how often changed tiles are emitted and source offsets committed")
	fs.IntVar(&c.FlushEvery, "flush-every", c.FlushEvery, "emit tiles and commit after this many records even within the flush interval")
	fs.IntVar(&c.RepartitionPartitions, "repartition-partitions", c.RepartitionPartitions, "partitions of "+aggregate.RepartitionTopic+" when it is created (most aggregation instances; never change it for an existing topic)")
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(false); err != nil {
		return err
	}
	switch {
	case c.Features == "":
		return errors.New("features: a directory of feature view YAML files is required")
	case c.FlushInterval <= 0:
		return fmt.Errorf("flush-interval: %s, want a positive duration", c.FlushInterval)
	case c.FlushEvery <= 0:
		return fmt.Errorf("flush-every: %d, want at least 1", c.FlushEvery)
	case c.RepartitionPartitions <= 0:
		return fmt.Errorf("repartition-partitions: %d, want at least 1", c.RepartitionPartitions)
	}
	return nil
}

// Topics returns the topics the service creates for cfg and views, with
// their partitions and cleanup policy: features.tiles (compacted), the
// repartition topic, and every view's source topic. Deployment manifests
// are checked against it.
func (c Config) Topics(views []*featurespec.View) []kafka.TopicSpec {
	specs := []kafka.TopicSpec{
		{Name: tiles.Topic, Partitions: tiles.TopicPartitions, Compacted: true},
		{Name: aggregate.RepartitionTopic, Partitions: c.RepartitionPartitions},
	}
	seen := map[string]bool{}
	for _, v := range views {
		if t := v.Source.Topic; !seen[t] {
			seen[t] = true
			specs = append(specs, kafka.TopicSpec{Name: t})
		}
	}
	return specs
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
}

// Service is a built, not yet running, featurizer.
type Service struct {
	base   *service.Base
	cfg    Config
	views  []*featurespec.View
	eng    *aggregate.Engine
	router *aggregate.Router
	agg    atomic.Pointer[kafkaio.Aggregator]
	route  *kafkaio.RouteHandler
}

// New validates cfg, loads the feature views and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	views, err := featurespec.LoadDir(cfg.Features)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	eng, err := aggregate.New(views)
	if err != nil {
		return nil, err
	}
	router, err := aggregate.NewRouter(views, &eng.C)
	if err != nil {
		return nil, err
	}
	base, err := service.New(ctx, Name, cfg.Common, false, deps.Log)
	if err != nil {
		return nil, err
	}
	s := &Service{base: base, cfg: cfg, views: views, eng: eng, router: router}
	base.Admin.AddCheck("tiles", func() error {
		if a := s.agg.Load(); a == nil || !a.Ready() {
			return errors.New("restoring tile state from " + tiles.Topic)
		}
		return nil
	})
	return s, nil
}

// Partitions lists the repartition partitions whose tiles this instance
// currently aggregates (its share of the consumer group).
func (s *Service) Partitions() []int32 {
	a := s.agg.Load()
	if a == nil {
		return nil
	}
	var out []int32
	a.WithEngine(func(e *aggregate.Engine) { out = e.Partitions() })
	return out
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx, s.stream)
}

// Close releases a service that will not run (its listener). After Run
// started it does nothing.
func (s *Service) Close() error { return s.base.Close() }

// stream creates the topics and runs both stages until ctx ends: the
// source stage (a consumer group on the source topics routing row changes
// to the repartition topic by entity) and the aggregation stage (a
// consumer group on the repartition topic turning them into tiles).
func (s *Service) stream(ctx context.Context) error {
	log := s.base.Log
	brokers := s.cfg.Common.Brokers()
	topics := s.eng.Topics()
	if err := kafka.EnsureTopics(ctx, brokers, s.cfg.Topics(s.views)...); err != nil {
		return err
	}
	tileOut, err := kafka.NewKeyedWriter(ctx, brokers, tiles.Topic)
	if err != nil {
		return err
	}
	defer func() { _ = tileOut.Close() }()
	routedOut, err := kafka.NewProducer(kafkaio.RoutedProducerConfig(brokers))
	if err != nil {
		return err
	}
	defer func() {
		if err := routedOut.Close(); err != nil {
			log.Warn("close routed record producer", "err", err)
		}
	}()
	agg, err := kafkaio.NewAggregator(kafkaio.AggregatorConfig{
		Brokers:       brokers,
		GroupID:       AggregateGroupID,
		Topic:         aggregate.RepartitionTopic,
		TilesTopic:    tiles.Topic,
		FlushInterval: s.cfg.FlushInterval,
		FlushEvery:    s.cfg.FlushEvery,
		Tracer:        s.base.Tel.SpanTracer(),
		Log:           log,
	}, s.eng, tileOut)
	if err != nil {
		return err
	}
	s.agg.Store(agg)
	// The topic may predate this instance's --repartition-partitions: the
	// router groups records by the count the producer's balancer sees.
	parts, err := kafkaio.PartitionCount(ctx, brokers, aggregate.RepartitionTopic)
	if err != nil {
		return err
	}
	s.route = kafkaio.NewRouteHandler(s.router, &s.eng.C, routedOut, kafkaio.RouteConfig{Partitions: parts, BatchSize: kafkaio.RoutedBatchSize,
		Tracer: s.base.Tel.SpanTracer(), Log: log})
	if err := s.registerMetrics(s.route, agg); err != nil {
		return err
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers:        brokers,
		GroupID:        GroupID,
		Topics:         topics,
		CommitInterval: s.cfg.FlushInterval,
		CommitEvery:    s.cfg.FlushEvery,
		// A routed batch mixes many source records: it links to the
		// sampled ones, and only those need their trace context.
		IgnoreTrace: true,
		Tracer:      s.base.Tel.SpanTracer(),
		Log:         log,
	})
	if err != nil {
		return err
	}
	log.Info("featurizer streaming", "topics", topics, "repartition_topic", aggregate.RepartitionTopic)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(gctx, s.route) })
	g.Go(func() error { return agg.Run(gctx) })
	return g.Wait()
}

func (s *Service) registerMetrics(h *kafkaio.RouteHandler, agg *kafkaio.Aggregator) error {
	m := s.base.Tel.Meter
	c := &s.eng.C
	var errs []error
	counter := func(name, desc string, v *atomic.Int64) {
		_, err := m.Int64ObservableCounter(name, metric.WithDescription(desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(v.Load())
				return nil
			}))
		errs = append(errs, err)
	}
	counter("tributary_featurizer_events", "source records handled", &c.Records)
	counter("tributary_featurizer_changes_applied", "row changes applied to tiles", &c.Applied)
	counter("tributary_featurizer_late_events_dropped", "inserts dropped for arriving after the allowed lateness", &c.Late)
	counter("tributary_featurizer_invalid_events", "records that could not be decoded (bad JSON, missing join key or event time)", &c.Invalid)
	counter("tributary_featurizer_tombstones", "source records without a value (the tombstone after a CDC delete), skipped", &c.Tombstones)
	counter("tributary_featurizer_duplicate_events", "records skipped as already applied (CDC LSN or replay after restart)", &c.Duplicates)
	counter("tributary_featurizer_tiles_emitted", "tile states written to features.tiles", &c.Emitted)
	counter("tributary_featurizer_tiles_expired", "tombstones written for expired tiles", &c.Expired)
	_, err := m.Int64ObservableGauge("tributary_featurizer_state_tiles", metric.WithDescription("tiles held in memory"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.Tiles.Load())
			return nil
		}))
	errs = append(errs, err)
	_, err = m.Int64ObservableGauge("tributary_kafka_consumer_lag", metric.WithDescription("records behind the partition's high watermark (on featurizer.repartition a record is a batch of routed changes)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for k, v := range h.Lag() {
				o.Observe(v, metric.WithAttributes(attribute.String("group", GroupID), attribute.String("topic", k.Topic), attribute.Int("partition", k.Partition)))
			}
			for k, v := range agg.Lag() {
				o.Observe(v, metric.WithAttributes(attribute.String("group", AggregateGroupID), attribute.String("topic", k.Topic), attribute.Int("partition", k.Partition)))
			}
			return nil
		}))
	errs = append(errs, err)
	return errors.Join(errs...)
}

// Command is the service as a command line (binary and `tributary featurizer`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
