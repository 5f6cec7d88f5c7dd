// Package ingest is the ingest service: change data capture from PostgreSQL into Kafka (Debezium envelope).
// Run is the one wiring place; the service binary and `tributary dev` both call it.
package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/ingest/internal/app"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
	"github.com/tributary-ml/tributary/services/ingest/internal/pg"
	"github.com/tributary-ml/tributary/services/ingest/internal/state"
)

// Name is the service name in logs and metrics.
const Name = "ingest"

// Usage describes the service in one line.
const Usage = "change data capture from PostgreSQL into Kafka (Debezium envelope)"

// MaskKeyEnv names the environment variable holding the masking key when
// --mask-key-file is not given.
const MaskKeyEnv = "TRIBUTARY_MASK_KEY"

// DevMaskKey is the masking key used when none is configured. It is public,
// so hashes made with it protect nothing: set a real key outside development.
const DevMaskKey = "tributary-dev-mask-key"

// Config is the service's configuration.
type Config struct {
	Common      config.Common
	PostgresDSN string
	Tables      string
	Slot        string
	Publication string
	// KeyAllColumns keys tables without a primary key by all their columns.
	KeyAllColumns bool
	// Mask is a list of schema.table.column=drop|hash|redact rules.
	Mask string
	// MaskKeyFile holds the HMAC key of hash rules (else $TRIBUTARY_MASK_KEY, else DevMaskKey).
	MaskKeyFile string
	// DecimalHandling is string (exact) or double.
	DecimalHandling string
	// Tombstones adds a null-valued record after each delete.
	Tombstones bool
	// SnapshotMode is initial or never.
	SnapshotMode string
	// StateTopic holds the per-slot snapshot marker.
	StateTopic string
	// StatusInterval is how often the slot's confirmed position is reported.
	StatusInterval time.Duration
	// HeartbeatInterval, when positive, emits a logical message that keeps
	// the slot moving while the whole database is idle.
	HeartbeatInterval time.Duration
	// ServerName is source.name in every envelope.
	ServerName string
}

// DefaultConfig returns the defaults of DESIGN.md §4.
func DefaultConfig() Config {
	return Config{
		Common: config.Common{
			KafkaBrokers: "127.0.0.1:9092",
			AdminAddr:    "127.0.0.1:8081",
			LogLevel:     "info",
		},
		PostgresDSN:     "postgres://postgres@127.0.0.1:5432/postgres",
		Tables:          "public.users,public.transactions,public.labels",
		Slot:            "tributary",
		Publication:     "tributary",
		Mask:            "public.users.email=hash",
		DecimalHandling: "string",
		Tombstones:      true,
		SnapshotMode:    app.SnapshotInitial,
		StateTopic:      "tributary.ingest.state",
		StatusInterval:  time.Second,
		ServerName:      "tributary",
	}
}

// RegisterFlags adds the service's flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Common.Register(fs, false)
	fs.StringVar(&c.PostgresDSN, "postgres-dsn", c.PostgresDSN, "PostgreSQL connection string (the user needs the REPLICATION privilege)")
	fs.StringVar(&c.Tables, "tables", c.Tables, "comma-separated schema.table list to capture")
	fs.StringVar(&c.Slot, "slot", c.Slot, "logical replication slot name (created when missing)")
	fs.StringVar(&c.Publication, "publication", c.Publication, "publication name (created when missing)")
	fs.BoolVar(&c.KeyAllColumns, "key-all-columns", c.KeyAllColumns, "key tables without a primary key by all their columns (they need REPLICA IDENTITY FULL)")
	fs.StringVar(&c.Mask, "mask", c.Mask, "column masking rules, comma-separated schema.table.column=drop|hash|redact")
	fs.StringVar(&c.MaskKeyFile, "mask-key-file", c.MaskKeyFile, "file holding the HMAC-SHA256 key of hash rules (else $"+MaskKeyEnv+", else a public development key)")
	fs.StringVar(&c.DecimalHandling, "decimal-handling", c.DecimalHandling, "numeric/decimal values as string (exact) or double")
	fs.BoolVar(&c.Tombstones, "tombstones", c.Tombstones, "write a null-valued record after each delete")
	fs.StringVar(&c.SnapshotMode, "snapshot-mode", c.SnapshotMode, "initial (snapshot the tables when the slot is created) or never")
	fs.StringVar(&c.StateTopic, "state-topic", c.StateTopic, "Kafka topic recording whether a slot's initial snapshot completed")
	fs.DurationVar(&c.StatusInterval, "status-interval", c.StatusInterval, "how often the slot's confirmed position is reported to PostgreSQL")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "emit a logical heartbeat message this often (0: off) so the slot advances while the database is idle")
	fs.StringVar(&c.ServerName, "server-name", c.ServerName, "source.name in every change event")
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate names the first bad field.
func (c Config) Validate() error {
	if err := c.Common.Validate(false); err != nil {
		return err
	}
	if c.PostgresDSN == "" {
		return errors.New("postgres-dsn: must not be empty")
	}
	if _, err := pg.ConnConfig(c.PostgresDSN, false); err != nil {
		return err
	}
	if _, err := pg.ParseTables(config.SplitList(c.Tables)); err != nil {
		return err
	}
	if !slotName.MatchString(c.Slot) {
		return fmt.Errorf("slot: %q must be 1-63 lower-case letters, digits or underscores", c.Slot)
	}
	if c.Publication == "" {
		return errors.New("publication: must not be empty")
	}
	if _, err := core.ParseMaskRules(c.Mask); err != nil {
		return fmt.Errorf("mask: %w", err)
	}
	if _, err := core.ParseDecimalMode(c.DecimalHandling); err != nil {
		return fmt.Errorf("decimal-handling: %w", err)
	}
	if c.SnapshotMode != app.SnapshotInitial && c.SnapshotMode != app.SnapshotNever {
		return fmt.Errorf("snapshot-mode: %q is not one of initial, never", c.SnapshotMode)
	}
	if strings.TrimSpace(c.StateTopic) == "" {
		return errors.New("state-topic: must not be empty")
	}
	if c.StatusInterval <= 0 {
		return errors.New("status-interval: must be positive")
	}
	if c.HeartbeatInterval < 0 {
		return errors.New("heartbeat-interval: must not be negative")
	}
	return nil
}

// Topics returns the topics the service creates for cfg, with their
// partitions and cleanup policy: one change-event topic per table and the
// snapshot-marker topic. Deployment manifests are checked against it.
func (c Config) Topics() ([]kafka.TopicSpec, error) {
	tables, err := pg.ParseTables(config.SplitList(c.Tables))
	if err != nil {
		return nil, err
	}
	return append(app.CDCTopics(tables), state.Spec(c.StateTopic)), nil
}

// Deps are what a caller may inject; zero values get defaults.
type Deps struct {
	Log *slog.Logger
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
	// MaxBatch bounds records per batch (tests lower it).
	MaxBatch int
	// BackoffMax bounds the wait between reconnects (tests lower it).
	BackoffMax time.Duration
}

// Service is a built, not yet running, ingest.
type Service struct {
	base *service.Base
	cfg  Config
	app  *app.App
}

// maskKey resolves the HMAC key of hash rules.
func maskKey(cfg Config, getenv func(string) string, log *slog.Logger, needed bool) ([]byte, error) {
	if cfg.MaskKeyFile != "" {
		b, err := os.ReadFile(cfg.MaskKeyFile)
		if err != nil {
			return nil, fmt.Errorf("mask-key-file: %w", err)
		}
		key := []byte(strings.TrimRight(string(b), "\r\n"))
		if len(key) == 0 {
			return nil, fmt.Errorf("mask-key-file: %s is empty", cfg.MaskKeyFile)
		}
		return key, nil
	}
	if k := getenv(MaskKeyEnv); k != "" {
		return []byte(k), nil
	}
	if needed {
		log.Warn("no masking key configured; hashing with the public development key", "set", "--mask-key-file or "+MaskKeyEnv)
	}
	return []byte(DevMaskKey), nil
}

// New validates cfg and binds the service's listeners.
func New(ctx context.Context, cfg Config, deps Deps) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Getenv == nil {
		deps.Getenv = os.Getenv
	}
	base, err := service.New(ctx, Name, cfg.Common, false, deps.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, base.Close())
		}
	}()
	tables, _ := pg.ParseTables(config.SplitList(cfg.Tables))
	rules, _ := core.ParseMaskRules(cfg.Mask)
	decimal, _ := core.ParseDecimalMode(cfg.DecimalHandling)
	key, err := maskKey(cfg, deps.Getenv, base.Log, rules.NeedsKey())
	if err != nil {
		return nil, err
	}
	a, err := app.New(app.Config{
		DSN: cfg.PostgresDSN, Slot: cfg.Slot, Publication: cfg.Publication, Tables: tables,
		Policy: pg.KeyPolicy{AllColumns: cfg.KeyAllColumns}, Rules: rules, MaskKey: key, Decimal: decimal,
		Tombstones: cfg.Tombstones, Brokers: cfg.Common.Brokers(), StateTopic: cfg.StateTopic,
		SnapshotMode: cfg.SnapshotMode, StatusInterval: cfg.StatusInterval, HeartbeatInterval: cfg.HeartbeatInterval,
		MaxBatch: deps.MaxBatch, ServerName: cfg.ServerName, BackoffMax: deps.BackoffMax, Tracer: base.Tel.SpanTracer(),
	}, base.Log, base.Tel.Meter)
	if err != nil {
		return nil, err
	}
	base.OnRelease(func() error {
		// A producer that cannot flush at shutdown is not a failed run: what
		// Kafka did not acknowledge is captured again from the slot.
		if err := a.Close(); err != nil {
			base.Log.Warn("close kafka producer", "err", err)
		}
		return nil
	})
	base.Admin.AddCheck("postgres", a.PostgresReady)
	base.Admin.AddCheck("kafka", a.KafkaReady)
	return &Service{base: base, cfg: cfg, app: a}, nil
}

// AdminAddr is the bound admin address.
func (s *Service) AdminAddr() string { return s.base.AdminAddr() }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.base.Run(ctx, s.app.Run)
}

// Close releases a service that will not run: its Kafka producer and
// listener. After Run started it does nothing.
func (s *Service) Close() error { return s.base.Close() }

// Command is the service as a command line (binary and `tributary ingest`).
func Command() service.Command {
	cfg := DefaultConfig()
	return service.NewCommand(Name, Usage, cfg.RegisterFlags, func(ctx context.Context) (*Service, error) { return New(ctx, cfg, Deps{}) })
}
