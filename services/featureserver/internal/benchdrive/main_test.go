package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
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
	rep, err := run(context.Background(), options{addr: addr, call: "noop", rate: 500, decode: "messages", duration: 200 * time.Millisecond, timeout: 5 * time.Second, maxInFlight: 100})
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

// TestClosedLoopKeepsCallersBusy: a closed loop reports every call it
// made, all answered, at whatever rate the server allows.
func TestClosedLoopKeepsCallersBusy(t *testing.T) {
	addr := healthServer(t)
	rep, err := run(context.Background(), options{addr: addr, call: "noop", concurrency: 4, decode: "messages", duration: 100 * time.Millisecond, timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "closed" || rep.Concurrency != 4 || rep.Count < 4 || rep.OK != rep.Count || rep.Skipped != 0 || len(rep.Codes) != 0 {
		t.Fatalf("report %+v, want a closed loop of 4 callers, every call OK", rep)
	}
	if rep.OKRate <= 0 || rep.ClientCPUUs <= 0 || rep.P99Ms < rep.P50Ms {
		t.Fatalf("report %+v: rate, client CPU or percentiles missing", rep)
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
	base := options{addr: addr, call: "features", rate: 100, decode: "messages", duration: 100 * time.Millisecond, timeout: time.Second, maxInFlight: 10}
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
		{"unknown decode", func(o *options) { o.decode = "json" }, "decode:"},
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

func response(rows, values int) *featuresv1.GetOnlineFeaturesResponse {
	resp := &featuresv1.GetOnlineFeaturesResponse{Features: []string{"v:a", "v:b"}}
	for range rows {
		vec := &featuresv1.FeatureVector{}
		for j := range values {
			vec.Values = append(vec.Values, &featuresv1.FeatureValue{Status: featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT,
				Value: &featuresv1.Value{Kind: &featuresv1.Value_StringValue{StringValue: fmt.Sprint(j)}}})
		}
		resp.Results = append(resp.Results, vec)
	}
	return resp
}

// TestShapeCountsRowsAndValues: --decode shape counts what the generated
// code decodes, and refuses a row with the wrong number of values.
func TestShapeCountsRowsAndValues(t *testing.T) {
	for _, tc := range []struct{ rows, values, want int }{{0, 0, 0}, {1, 50, 50}, {100, 50, 50}, {3, 2, 3}} {
		b, err := proto.Marshal(response(tc.rows, tc.values))
		if err != nil {
			t.Fatal(err)
		}
		s := &shape{wantValues: tc.want}
		err = s.read(b)
		if tc.values != tc.want && tc.rows > 0 {
			if err == nil {
				t.Fatalf("%d×%d read as rows of %d values", tc.rows, tc.values, tc.want)
			}
			continue
		}
		if err != nil || s.rows != tc.rows {
			t.Fatalf("%d×%d: rows %d, err %v", tc.rows, tc.values, s.rows, err)
		}
	}
}

// FuzzShape: reading any bytes as a shape never panics, and what it
// accepts as well-formed protobuf has the rows the generated code finds.
func FuzzShape(f *testing.F) {
	for _, r := range []*featuresv1.GetOnlineFeaturesResponse{response(2, 3), response(1, 0)} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
	}
	f.Add([]byte{0x12, 0x05}, 1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		s := &shape{wantValues: want}
		if err := s.read(b); err != nil {
			return
		}
		var resp featuresv1.GetOnlineFeaturesResponse
		if proto.Unmarshal(b, &resp) == nil && len(resp.GetResults()) != s.rows {
			t.Fatalf("%d rows, the generated code finds %d", s.rows, len(resp.GetResults()))
		}
	})
}
