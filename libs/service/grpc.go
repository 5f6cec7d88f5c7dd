package service

import (
	"context"
	"net"
	"runtime"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/telemetry"
)

// GRPC is a gRPC server with health and reflection registered.
type GRPC struct {
	Server *grpc.Server
	health *health.Server
	names  []string
}

// NewGRPC builds a gRPC server that records request counts and latency and
// continues traces from incoming W3C trace context. Register services on
// g.Server, then call Serve.
func NewGRPC(tel *telemetry.Telemetry, opts ...grpc.ServerOption) (*GRPC, error) {
	count, err := tel.Meter.Int64Counter("tributary_grpc_server_requests",
		metric.WithDescription("gRPC requests handled, by method and status code"))
	if err != nil {
		return nil, err
	}
	dur, err := tel.Meter.Float64Histogram("tributary_grpc_server_duration_seconds",
		metric.WithDescription("gRPC request handling time"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
	if err != nil {
		return nil, err
	}
	// Attribute sets are built once per method (and status code): building
	// them on every call showed up in the featureserver's CPU profile.
	var countAttrs, durAttrs sync.Map
	attrsFor := func(cache *sync.Map, key any, kv ...attribute.KeyValue) metric.MeasurementOption {
		if o, ok := cache.Load(key); ok {
			return o.(metric.MeasurementOption)
		}
		o := metric.WithAttributeSet(attribute.NewSet(kv...))
		cache.Store(key, o)
		return o
	}
	icpt := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			ctx = tel.Propagator.Extract(ctx, mdCarrier(md))
		}
		ctx, span := tel.Tracer.Start(ctx, info.FullMethod, trace.WithSpanKind(trace.SpanKindServer))
		resp, err := h(ctx, req)
		code := status.Code(err)
		if code != codes.OK {
			span.RecordError(err)
		}
		span.End()
		m := info.FullMethod
		count.Add(ctx, 1, attrsFor(&countAttrs, methodCode{m, code}, attribute.String("method", m), attribute.String("code", code.String())))
		dur.Record(ctx, time.Since(start).Seconds(), attrsFor(&durAttrs, m, attribute.String("method", m)))
		return resp, err
	}
	// Stream workers reuse goroutines across calls instead of starting one
	// (and growing its stack) per call.
	opts = append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(icpt), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}, opts...)
	g := &GRPC{Server: grpc.NewServer(opts...), health: health.NewServer()}
	healthpb.RegisterHealthServer(g.Server, g.health)
	reflection.Register(g.Server)
	return g, nil
}

// SetServing marks every registered service (and the server as a whole) as
// serving or not serving in grpc.health.v1.
func (g *GRPC) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	g.health.SetServingStatus("", st)
	for name := range g.Server.GetServiceInfo() {
		g.health.SetServingStatus(name, st)
	}
}

// Serve serves on lis until ctx ends, then stops taking new calls and drains
// in-flight ones for up to ShutdownGrace before stopping hard.
func (g *GRPC) Serve(ctx context.Context, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.SetServing(false)
	done := make(chan struct{})
	go func() { g.Server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(ShutdownGrace):
		g.Server.Stop()
	}
	return nil
}

type methodCode struct {
	method string
	code   codes.Code
}

// mdCarrier adapts gRPC metadata to a propagation carrier.
type mdCarrier metadata.MD

var _ propagation.TextMapCarrier = mdCarrier(nil)

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectOutgoing adds ctx's trace context to outgoing gRPC metadata, for clients.
func InjectOutgoing(ctx context.Context, p propagation.TextMapPropagator) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx)
	if ok {
		md = md.Copy()
	} else {
		md = metadata.MD{}
	}
	p.Inject(ctx, mdCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}
