package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/stack"
	"github.com/tributary-ml/tributary/libs/testutil"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// otlpReceiver is an OTLP/gRPC trace receiver recording the services and
// span names it was sent.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]string // service.name → span names
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				svc = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans[svc] = append(r.spans[svc], s.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// metricsSink accepts OTLP metrics (the services send them too).
type metricsSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
}

func (metricsSink) Export(context.Context, *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// TestDevSendsTracesToOTLPEndpoint: the stack `tributary dev` runs passes
// --otlp-endpoint on to the services, which export their spans there over
// OTLP/gRPC (checked with a gRPC call's server span, flushed when the
// stack stops).
func TestDevSendsTracesToOTLPEndpoint(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &otlpReceiver{spans: map[string][]string{}}
	collectortrace.RegisterTraceServiceServer(srv, rec)
	collectormetrics.RegisterMetricsServiceServer(srv, metricsSink{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	st, err := stack.Start(ctx, stack.Config{
		FreePorts: true, DataDir: t.TempDir(), LogLevel: "error",
		FeaturesDir: "../../examples/fraud/features", ModelsDir: "../../examples/fraud/models",
		OTLPEndpoint: lis.Addr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = st.WaitReady(rctx)
	cancel()
	if err != nil {
		stop()
		t.Fatal(errors.Join(err, <-done))
	}
	features := featuresv1.NewFeatureServiceClient(dial(t, st.Featureserver.GRPCAddr()))
	if _, err := features.ListFeatureViews(ctx, &featuresv1.ListFeatureViewsRequest{}); err != nil {
		t.Error(err)
	}
	stop() // the services flush their spans as they stop
	if err := <-done; err != nil {
		t.Fatalf("stack stopped with: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := strings.Join(rec.spans["tributary-featureserver"], ",")
	if !strings.Contains(got, "ListFeatureViews") {
		t.Errorf("the OTLP receiver got featureserver spans %q, want the ListFeatureViews call's (all: %v)", got, rec.spans)
	}
}

// TestDevRejectsBadOTLPEndpoint: `tributary dev` checks --otlp-endpoint
// before starting anything and names the flag.
func TestDevRejectsBadOTLPEndpoint(t *testing.T) {
	var out, errOut strings.Builder
	if code := devCommand([]string{"--otlp-endpoint", "collector"}, &out, &errOut); code != 2 {
		t.Fatalf("exit code %d, want 2 (stderr %q)", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "otlp-endpoint") {
		t.Errorf("stderr %q does not name the flag", errOut.String())
	}
}
