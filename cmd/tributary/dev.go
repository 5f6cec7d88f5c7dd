package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/demo"
	"github.com/tributary-ml/tributary/cmd/tributary/internal/stack"
	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/libs/pgdev"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/offline"
)

// devCommand runs the whole platform in one process.
func devCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "keep Kafka's log and the embedded stores here across runs (default: a temporary directory removed on exit)")
	noDemo := fs.Bool("no-demo", false, "do not run the demo workload")
	example := fs.String("example", "examples/fraud", "example directory (features/, models/, schema.sql)")
	postgres := fs.String("postgres-dsn", "", "capture this PostgreSQL instead of starting a throw-away cluster (the demo applies examples/fraud/schema.sql to it and writes users, transactions and labels)")
	rate := fs.Float64("sessions-per-second", demo.DefaultSessionsPerSecond, "demo workload: user sessions started per second (the example model was trained at the default)")
	logLevel := fs.String("log-level", "error", "log level of the services: debug, info, warn or error (warn shows model-health alerts, which fire while the demo's windows fill up after a start)")
	every := fs.Duration("summary-every", 5*time.Second, "how often to print the live summary")
	skewEvery := fs.Duration("skew-every", time.Minute, "how often to print the skew report's line: the features the demo's model was served against the same features computed offline from the archive (0 turns it off)")
	otlp := fs.String("otlp-endpoint", "", "send every service's traces and metrics to this OTLP gRPC endpoint (host:port), e.g. the OpenTelemetry collector of docker-compose.yml at 127.0.0.1:4317; empty sends none")
	kafkaBrokers := fs.String("kafka-brokers", "", "use this Kafka cluster (comma-separated bootstrap brokers, e.g. 127.0.0.1:29092 of make infra-up) instead of starting the embedded broker")
	scyllaHosts := fs.String("scylla-hosts", "", "keep the online features in this ScyllaDB or other CQL server (comma-separated hosts, e.g. 127.0.0.1:9042 of make infra-up) instead of the embedded store")
	scyllaKeyspace := fs.String("scylla-keyspace", "tributary", "keyspace of the online features with --scylla-hosts")
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if _, err := config.ParseLevel(*logLevel); err != nil {
		fmt.Fprintf(stderr, "dev: log-level: %v\n", err)
		return 2
	}
	if *otlp != "" {
		if err := config.CheckAddr("otlp-endpoint", *otlp); err != nil {
			fmt.Fprintf(stderr, "dev: %v\n", err)
			return 2
		}
	}
	if _, err := os.Stat(filepath.Join(*example, "features")); err != nil {
		fmt.Fprintf(stderr, "dev: example: %v (run from the repository root, or pass --example)\n", err)
		return 2
	}
	lvl, _ := config.ParseLevel(*logLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := service.SignalContext()
	defer stop()
	if err := runDev(ctx, devOptions{
		dataDir: *dataDir, noDemo: *noDemo, example: *example, postgres: *postgres,
		rate: *rate, logLevel: *logLevel, every: *every, skewEvery: *skewEvery, log: log, out: stdout, otlp: *otlp,
		kafkaBrokers: *kafkaBrokers, scyllaHosts: *scyllaHosts, scyllaKeyspace: *scyllaKeyspace,
	}); err != nil {
		fmt.Fprintf(stderr, "dev: %v\n", err)
		return 1
	}
	return 0
}

type devOptions struct {
	dataDir, example, postgres, logLevel, otlp string
	kafkaBrokers, scyllaHosts, scyllaKeyspace  string
	noDemo                                     bool
	rate                                       float64
	every, skewEvery                           time.Duration
	log                                        *slog.Logger
	out                                        io.Writer
}

func runDev(ctx context.Context, o devOptions) error {
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "tributary-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dataDir = dir
	}
	dsn := o.postgres
	if dsn == "" {
		pg, err := pgdev.Start(ctx, o.log)
		switch {
		case errors.Is(err, pgdev.ErrNoPostgres):
			fmt.Fprintf(o.out, "PostgreSQL not found (%v): CDC is skipped; install PostgreSQL for the full pipeline\n", err)
		case err != nil:
			fmt.Fprintf(o.out, "throw-away PostgreSQL did not start (%v): CDC is skipped\n", err)
		default:
			defer pg.Stop()
			dsn = pg.DSN
		}
	}
	schema := filepath.Join(o.example, "schema.sql")
	if dsn != "" {
		// Tables must exist before ingest creates its publication.
		if err := demo.ApplySchema(ctx, dsn, schema); err != nil {
			return err
		}
	}
	st, err := stack.Start(ctx, stack.Config{
		DataDir:      o.dataDir,
		PostgresDSN:  dsn,
		FeaturesDir:  filepath.Join(o.example, "features"),
		ModelsDir:    filepath.Join(o.example, "models"),
		LogLevel:     o.logLevel,
		Log:          o.log,
		OTLPEndpoint: o.otlp,

		KafkaBrokers:   o.kafkaBrokers,
		ScyllaHosts:    o.scyllaHosts,
		ScyllaKeyspace: o.scyllaKeyspace,
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.Run(gctx) })

	rctx, cancel := context.WithTimeout(gctx, 60*time.Second)
	err = st.WaitReady(rctx)
	cancel()
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	printEndpoints(o.out, st, dsn)

	var w *demo.Workload
	if !o.noDemo {
		w = demo.NewWorkload(demo.WorkloadConfig{
			PostgresDSN: dsn, Brokers: config.SplitList(st.KafkaAddr()),
			ModelserverAddr: st.Modelserver.GRPCAddr(), FeatureserverAddr: st.Featureserver.GRPCAddr(),
			SessionsPerSecond: o.rate, Seed: uint64(time.Now().UnixNano()), Log: o.log,
		})
		g.Go(func() error { return w.Run(gctx) })
		g.Go(func() error { return summary(gctx, o.out, w, o.every) })
		if o.skewEvery > 0 {
			g.Go(func() error {
				return skewLoop(gctx, o.out, o.skewEvery, offline.SkewJob{
					FeaturesDir: filepath.Join(o.example, "features"), ModelsDir: filepath.Join(o.example, "models"),
					Archive: st.OfflineURL, KafkaBrokers: config.SplitList(st.KafkaAddr()),
				})
			})
		}
	}
	err = g.Wait()
	fmt.Fprintln(o.out, "stopped")
	return err
}

func printEndpoints(out io.Writer, st *stack.Stack, dsn string) {
	fmt.Fprintf(out, "tributary dev is running (Ctrl-C stops)\n")
	kind := "embedded"
	if st.Kafka == nil {
		kind = "external"
	}
	fmt.Fprintf(out, "  kafka          %s (%s)\n", st.KafkaAddr(), kind)
	if dsn != "" {
		fmt.Fprintf(out, "  postgres       %s\n", dsn)
	}
	addrs := st.AdminAddrs()
	fmt.Fprintf(out, "  featureserver  grpc %s  admin http://%s\n", st.Featureserver.GRPCAddr(), addrs["featureserver"])
	fmt.Fprintf(out, "  modelserver    grpc %s  admin http://%s  (OIP REST /v2)\n", st.Modelserver.GRPCAddr(), addrs["modelserver"])
	fmt.Fprintf(out, "  metrics        grpc %s  admin http://%s\n", st.Metrics.GRPCAddr(), addrs["metrics"])
	fmt.Fprintf(out, "  offline        grpc %s  admin http://%s  (archive %s)\n", st.Offline.GRPCAddr(), addrs["offline"], st.OfflineURL)
	fmt.Fprintf(out, "  featurizer     admin http://%s\n", addrs["featurizer"])
	fmt.Fprintf(out, "  skew report    go run ./cmd/tributary skew --model %s --offline %s\n", demoModel, strings.TrimPrefix(st.OfflineURL, "file://"))
	if a, ok := addrs["ingest"]; ok {
		fmt.Fprintf(out, "  ingest         admin http://%s\n", a)
	}
}

// summary prints one line every interval: events/s, predictions/s, p99
// predict latency and feature freshness (commit → servable).
func summary(ctx context.Context, out io.Writer, w *demo.Workload, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastEvents, lastPreds int64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			secs := now.Sub(last).Seconds()
			ev, pr := w.Stats.Events.Load(), w.Stats.Predictions.Load()
			p99, fresh := w.Stats.Snapshot()
			fr := "n/a"
			if fresh > 0 {
				fr = fresh.Round(time.Millisecond).String()
			}
			fmt.Fprintf(out, "%s  events/s %6.1f  predictions/s %5.1f  predict p99 %-8s  freshness %-8s  labels %d  errors %d\n",
				now.Format("15:04:05"), float64(ev-lastEvents)/secs, float64(pr-lastPreds)/secs,
				p99.Round(10*time.Microsecond), fr, w.Stats.Labels.Load(), w.Stats.Errors.Load())
			lastEvents, lastPreds, last = ev, pr, now
		}
	}
}

// demoModel is the model the demo workload calls.
const demoModel = "fraud_lr"

// skewLoop checks, every interval, the features the demo's model was
// served against the same features computed offline from the archive, and
// prints one line.
func skewLoop(ctx context.Context, out io.Writer, every time.Duration, j offline.SkewJob) error {
	j.Model = demoModel
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			rep, err := offline.RunSkew(ctx, j)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(out, "%s  skew %s: %v\n", now.Format("15:04:05"), j.Model, err)
				continue
			}
			fmt.Fprintf(out, "%s  skew %s: %s\n", now.Format("15:04:05"), j.Model, rep.Line())
		}
	}
}

// kafkaCommand runs the embedded broker alone.
func kafkaCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kafka", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := kafkabroker.DefaultConfig()
	fs.IntVar(&cfg.Port, "port", cfg.Port, "port on 127.0.0.1")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of auto-created topics")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "persist the log here (default: in memory)")
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	b, err := kafkabroker.Start(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kafka: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "embedded kafka listening on %s (Ctrl-C stops)\n", b.Addr())
	ctx, stop := service.SignalContext()
	defer stop()
	<-ctx.Done()
	b.Close()
	return 0
}
