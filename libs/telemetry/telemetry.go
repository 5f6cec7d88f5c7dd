// Package telemetry sets up OpenTelemetry for a service: metrics exported in
// Prometheus text format on the admin port (one registry per service, so
// services sharing a process in `tributary dev` keep their metrics apart),
// and, when an OTLP endpoint is configured, traces and metrics sent over
// OTLP/gRPC too.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds one service's meter and tracer.
type Telemetry struct {
	Meter      metric.Meter
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	registry   *prometheus.Registry
	mp         *sdkmetric.MeterProvider
	tp         *sdktrace.TracerProvider
	// recording says spans go to an exporter (see SpanTracer).
	recording bool
}

// Option configures New.
type Option func(*options)

type options struct{ exporter sdktrace.SpanExporter }

// WithSpanExporter sends every span to exp as it ends (all sampled unless
// their parent is not), besides OTLP when that is configured too: for
// tests, with sdk/trace/tracetest's in-memory exporter.
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter = exp }
}

// New builds telemetry for service. otlpEndpoint (host:port) enables OTLP
// trace export; empty leaves tracing as a no-op that still propagates context.
func New(ctx context.Context, service, otlpEndpoint string, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("tributary-" + service))
	mopts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(res)}
	// Without an OTLP endpoint spans are not sampled: they still get trace
	// ids, which travel in gRPC metadata and Kafka headers and are logged
	// with predictions, but nothing is recorded or exported.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))}
	if otlpEndpoint != "" {
		mexp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(otlpEndpoint), otlpmetricgrpc.WithInsecure())
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter for %s: %w", otlpEndpoint, err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(15*time.Second))))
		texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlpEndpoint), otlptracegrpc.WithInsecure())
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter for %s: %w", otlpEndpoint, err)
		}
		topts = []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(texp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))}
	}
	if o.exporter != nil {
		topts = append(topts, sdktrace.WithSyncer(o.exporter), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	tp := sdktrace.NewTracerProvider(topts...)
	return &Telemetry{
		Meter:      mp.Meter("tributary/" + service),
		Tracer:     tp.Tracer("tributary/" + service),
		Propagator: propagation.TraceContext{},
		registry:   reg,
		mp:         mp,
		tp:         tp,
		recording:  otlpEndpoint != "" || o.exporter != nil,
	}, nil
}

// SpanTracer is the tracer for the spans a service makes on its data path
// (Kafka producer and consumer spans): nil when spans are exported
// nowhere, so hot paths skip even the check whether a record is sampled.
// (Tracer itself always works: gRPC spans carry trace ids into logs.)
func (t *Telemetry) SpanTracer() trace.Tracer {
	if !t.recording {
		return nil
	}
	return t.Tracer
}

// Handler serves the service's metrics in Prometheus text format.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if err := t.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("meter provider: %w", err))
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tracer provider: %w", err))
	}
	return errors.Join(errs...)
}
