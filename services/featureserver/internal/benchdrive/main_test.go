package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func healthServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestOpenLoopCountsEveryCall drives a health server: every scheduled
// call is made and answered, and the report adds up.
func TestOpenLoopCountsEveryCall(t *testing.T) {
	addr := healthServer(t)
	rep, err := run(context.Background(), options{addr: addr, call: "noop", rate: 500, duration: 200 * time.Millisecond, timeout: 5 * time.Second, maxInFlight: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count != 100 || rep.OK != 100 || rep.Skipped != 0 || len(rep.Codes) != 0 {
		t.Fatalf("report %+v, want 100 calls all OK", rep)
	}
	if rep.P50Ms <= 0 || rep.P99Ms < rep.P50Ms || rep.MaxMs < rep.P99Ms || rep.OKRate <= 0 {
		t.Fatalf("report %+v: percentiles out of order", rep)
	}
}

// TestBadSetupsAreErrors: a server without the feature service, and bad
// request files, fail the run instead of reporting numbers.
func TestBadSetupsAreErrors(t *testing.T) {
	addr := healthServer(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`[{"features":["v:f"],"entities":[{"join_keys":{"user_id":"u"}}]}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"features":["v:f"],"entity":[]}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := options{addr: addr, call: "features", rate: 100, duration: 100 * time.Millisecond, timeout: time.Second, maxInFlight: 10}
	tests := []struct {
		name string
		edit func(*options)
		want string
	}{
		{"no feature service", func(o *options) { o.data = good }, "first call"},
		{"unknown field in data", func(o *options) { o.data = bad }, "request 0"},
		{"missing data", func(o *options) { o.data = filepath.Join(dir, "none.json") }, "data:"},
		{"unknown call", func(o *options) { o.call = "ping" }, "call:"},
		{"zero rate", func(o *options) { o.rate = 0 }, "rate:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
