// Package config binds command-line flags to TRIBUTARY_* environment
// overrides and holds the flags every service shares.
//
// A flag's environment variable is TRIBUTARY_ followed by the flag name in
// upper case with '-' replaced by '_' (--kafka-brokers → TRIBUTARY_KAFKA_BROKERS).
// A flag given on the command line wins over the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "TRIBUTARY_"

// EnvName returns the environment variable that overrides flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs and then applies environment overrides to every
// flag that was not set on the command line. lookup is os.LookupEnv when nil.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Common holds the flags every service shares.
type Common struct {
	KafkaBrokers string
	AdminAddr    string
	GRPCAddr     string
	LogLevel     string
	OTLPEndpoint string
	// SpanExporter, not a flag, receives every span besides OTLP (tests
	// pass sdk/trace/tracetest's in-memory exporter).
	SpanExporter sdktrace.SpanExporter
}

// Register adds the shared flags to fs with c's current values as defaults.
// grpc is false for services that serve no gRPC.
func (c *Common) Register(fs *flag.FlagSet, grpc bool) {
	fs.StringVar(&c.KafkaBrokers, "kafka-brokers", c.KafkaBrokers, "comma-separated Kafka bootstrap brokers")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "listen address of the admin HTTP server (/healthz, /readyz, /metrics)")
	if grpc {
		fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "listen address of the gRPC server")
	}
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "OTLP gRPC endpoint (host:port) for traces and metrics; empty disables OTLP")
}

// Brokers returns the Kafka brokers as a list.
func (c Common) Brokers() []string { return SplitList(c.KafkaBrokers) }

// Validate names the first bad field.
func (c Common) Validate(grpc bool) error {
	if len(c.Brokers()) == 0 {
		return errors.New("kafka-brokers: must name at least one broker")
	}
	for _, b := range c.Brokers() {
		if err := CheckAddr("kafka-brokers", b); err != nil {
			return err
		}
	}
	if err := CheckAddr("admin-addr", c.AdminAddr); err != nil {
		return err
	}
	if grpc {
		if err := CheckAddr("grpc-addr", c.GRPCAddr); err != nil {
			return err
		}
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	if c.OTLPEndpoint != "" {
		if err := CheckAddr("otlp-endpoint", c.OTLPEndpoint); err != nil {
			return err
		}
	}
	return nil
}

// CheckAddr checks that addr is host:port and names field when it is not.
func CheckAddr(field, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", field, addr, err)
	}
	return nil
}

// SplitList splits a comma-separated list and drops empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}

// NewLogger returns a text logger at level for a named service.
func NewLogger(level, service string) *slog.Logger {
	l, err := ParseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("service", service)
}
