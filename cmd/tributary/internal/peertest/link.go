package peertest

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// Link is a gRPC hop between the modelserver and the featureserver: it
// forwards every FeatureService call unchanged (metadata and deadline
// included) and answers with the featureserver's own answer. It records
// which (view, entity) pairs were asked for and can hold requests, as a
// slow network or an overloaded featureserver would.
type Link struct {
	featuresv1.UnimplementedFeatureServiceServer
	next  featuresv1.FeatureServiceClient
	views map[string]*featurespec.View
	lis   net.Listener

	mu      sync.Mutex
	reads   map[string]int
	gate    chan struct{} // nil: requests pass
	entered chan struct{}
}

// startLink serves a Link in front of conn until the test ends.
func startLink(t testing.TB, conn grpc.ClientConnInterface, views map[string]*featurespec.View) *Link {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{next: featuresv1.NewFeatureServiceClient(conn), views: views, lis: lis,
		reads: map[string]int{}, entered: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	featuresv1.RegisterFeatureServiceServer(srv, l)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		l.Release() // held requests end before the servers stop
		srv.Stop()
		<-done
	})
	return l
}

// Addr is the Link's gRPC address.
func (l *Link) Addr() string { return l.lis.Addr().String() }

func forward(ctx context.Context) context.Context {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		return metadata.NewOutgoingContext(ctx, md)
	}
	return ctx
}

// GetOnlineFeatures records the request, waits while requests are held,
// then forwards it.
func (l *Link) GetOnlineFeatures(ctx context.Context, req *featuresv1.GetOnlineFeaturesRequest) (*featuresv1.GetOnlineFeaturesResponse, error) {
	l.mu.Lock()
	for _, view := range l.viewsOf(req.GetFeatures()) {
		for _, row := range req.GetEntities() {
			if entity, ok := l.entity(view, row.GetJoinKeys()); ok {
				l.reads[view+"|"+entity]++
			}
		}
	}
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case l.entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.next.GetOnlineFeatures(forward(ctx), req)
}

// ListFeatureViews forwards the call.
func (l *Link) ListFeatureViews(ctx context.Context, req *featuresv1.ListFeatureViewsRequest) (*featuresv1.ListFeatureViewsResponse, error) {
	return l.next.ListFeatureViews(forward(ctx), req)
}

// viewsOf lists the views that refs ("view:feature") name, once each.
func (l *Link) viewsOf(refs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, ref := range refs {
		view, _, _ := strings.Cut(ref, ":")
		if !seen[view] {
			seen[view] = true
			out = append(out, view)
		}
	}
	return out
}

// entity is the entity id the featureserver reads view's tiles under.
func (l *Link) entity(view string, keys map[string]string) (string, bool) {
	v, ok := l.views[view]
	if !ok {
		return "", false
	}
	vals := make([]string, len(v.Entity.JoinKeys))
	for i, k := range v.Entity.JoinKeys {
		if vals[i], ok = keys[k]; !ok {
			return "", false
		}
	}
	return tiles.EntityID(vals), true
}

// Hold makes requests wait until Release (or until their deadline).
func (l *Link) Hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate == nil {
		l.gate = make(chan struct{})
	}
}

// Release lets held and later requests through.
func (l *Link) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
}

// WaitHeld waits until a request is held in the Link.
func (l *Link) WaitHeld(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-l.entered:
	case <-time.After(timeout):
		t.Fatalf("no featureserver request reached the held link within %s", timeout)
	}
}

// Reads lists the (view|entity) pairs asked for since the last ResetReads, sorted.
func (l *Link) Reads() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.reads))
	for k := range l.reads {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ResetReads forgets the reads recorded so far.
func (l *Link) ResetReads() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.reads)
}
