// Package featurepeer is a test peer: a real gRPC server implementing the
// featureserver's tributary.features.v1.FeatureService with values a test
// sets. The modelserver's tests talk to it over TCP exactly as they would to
// the featureserver, which is written in parallel.
package featurepeer

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// View is a feature view the peer knows.
type View struct {
	Name     string
	JoinKeys []string
}

// Server is the running peer.
type Server struct {
	featuresv1.UnimplementedFeatureServiceServer
	addr  string
	views map[string][]string

	mu     sync.Mutex
	values map[string]*featuresv1.FeatureValue // entity|ref → value
	delay  time.Duration
	last   *featuresv1.GetOnlineFeaturesRequest

	calls atomic.Int64
}

// Start serves the peer on a free loopback port until the test ends.
func Start(t testing.TB, views ...View) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{addr: lis.Addr().String(), views: map[string][]string{}, values: map[string]*featuresv1.FeatureValue{}}
	for _, v := range views {
		s.views[v.Name] = v.JoinKeys
	}
	g := grpc.NewServer()
	featuresv1.RegisterFeatureServiceServer(g, s)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return s
}

// Addr is the peer's address.
func (s *Server) Addr() string { return s.addr }

// Calls counts GetOnlineFeatures calls.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Last is the last GetOnlineFeatures request.
func (s *Server) Last() *featuresv1.GetOnlineFeaturesRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// SetDelay makes every GetOnlineFeatures wait d (or until the caller's deadline).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Set stores a present value of ref for the entity whose join key values are keys (in the view's join key order).
func (s *Server) Set(ref string, v *featuresv1.Value, keys ...string) {
	s.SetStatus(ref, v, featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT, keys...)
}

// SetStatus stores a value with a status (STALE values are served as stale).
func (s *Server) SetStatus(ref string, v *featuresv1.Value, st featuresv1.FeatureStatus, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[strings.Join(keys, ",")+"|"+ref] = &featuresv1.FeatureValue{Value: v, Status: st}
}

// Double is a double Value.
func Double(v float64) *featuresv1.Value {
	return &featuresv1.Value{Kind: &featuresv1.Value_DoubleValue{DoubleValue: v}}
}

// Int is an int64 Value.
func Int(v int64) *featuresv1.Value {
	return &featuresv1.Value{Kind: &featuresv1.Value_Int64Value{Int64Value: v}}
}

// String is a string Value.
func String(v string) *featuresv1.Value {
	return &featuresv1.Value{Kind: &featuresv1.Value_StringValue{StringValue: v}}
}

// GetOnlineFeatures answers from the stored values; unknown ones are NOT_FOUND.
func (s *Server) GetOnlineFeatures(ctx context.Context, req *featuresv1.GetOnlineFeaturesRequest) (*featuresv1.GetOnlineFeaturesResponse, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.last = req
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	resp := &featuresv1.GetOnlineFeaturesResponse{Features: req.GetFeatures()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, row := range req.GetEntities() {
		vec := &featuresv1.FeatureVector{}
		for _, ref := range req.GetFeatures() {
			view, _, _ := strings.Cut(ref, ":")
			jk, ok := s.views[view]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "feature view %q unknown", view)
			}
			keys := make([]string, len(jk))
			for i, k := range jk {
				v, ok := row.GetJoinKeys()[k]
				if !ok {
					return nil, status.Errorf(codes.InvalidArgument, "entity row: join key %q of view %q missing", k, view)
				}
				keys[i] = v
			}
			fv, ok := s.values[strings.Join(keys, ",")+"|"+ref]
			if !ok {
				fv = &featuresv1.FeatureValue{Status: featuresv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND}
			}
			vec.Values = append(vec.Values, fv)
		}
		resp.Results = append(resp.Results, vec)
	}
	return resp, nil
}

// ListFeatureViews lists the views with their join keys.
func (s *Server) ListFeatureViews(context.Context, *featuresv1.ListFeatureViewsRequest) (*featuresv1.ListFeatureViewsResponse, error) {
	out := &featuresv1.ListFeatureViewsResponse{}
	for name, jk := range s.views {
		out.Views = append(out.Views, &featuresv1.FeatureViewInfo{Name: name, JoinKeys: jk})
	}
	return out, nil
}
