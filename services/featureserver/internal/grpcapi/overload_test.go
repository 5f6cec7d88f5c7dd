package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/testutil"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// gatedStore holds every read of the (embedded) store until release is
// closed or the read's context ends, reporting each held read on entered.
type gatedStore struct {
	core.TileStore
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) GetTiles(ctx context.Context, view, entity string, dst []*core.Tile) ([]*core.Tile, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	return g.TileStore.GetTiles(ctx, view, entity, dst)
}

func newGate() *gatedStore {
	return &gatedStore{entered: make(chan struct{}, 8), release: make(chan struct{})}
}

func (g *gatedStore) wrap(st core.TileStore) core.TileStore {
	g.TileStore = st
	return g
}

func oneFeature(e *env, entity string) *featuresv1.GetOnlineFeaturesRequest {
	return &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{e.view.Ref(e.view.Features[0])},
		Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": entity}}},
	}
}

// TestOverloadOverGRPC fills the in-flight limit with reads held inside
// the store, then checks through a real gRPC listener that one more
// request is refused with RESOURCE_EXHAUSTED at once, and that the server
// takes requests again once the held ones finished.
func TestOverloadOverGRPC(t *testing.T) {
	limits := core.DefaultLimits()
	limits.MaxInFlight = 2
	gate := newGate()
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	e := serveWith(t, 1, limits, gate.wrap)
	req := oneFeature(e, "user-0")

	held := make(chan error, limits.MaxInFlight)
	for range limits.MaxInFlight {
		go func() {
			_, err := e.client.GetOnlineFeatures(testutil.Context(t, 20*time.Second), req)
			held <- err
		}()
	}
	for i := range limits.MaxInFlight {
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d requests reached the store within 10s", i, limits.MaxInFlight)
		}
	}

	_, err := e.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), req)
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "retry with backoff") {
		t.Fatalf("request over the in-flight limit: err = %v, want RESOURCE_EXHAUSTED telling to retry with backoff", err)
	}

	// The held requests finish once their reads are let through, and free
	// their slots.
	close(gate.release)
	released = true
	for range limits.MaxInFlight {
		if err := <-held; err != nil {
			t.Fatalf("held request: %v", err)
		}
	}
	resp, err := e.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), oneFeature(e, "nobody"))
	if err != nil {
		t.Fatalf("request after the held ones finished: %v", err)
	}
	if got := resp.GetResults()[0].GetValues()[0].GetStatus(); got != featuresv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
		t.Fatalf("unknown entity: status %s, want NOT_FOUND", got)
	}
}

// TestDeadlineOverGRPC checks that a read held in the store past the
// caller's deadline ends with DEADLINE_EXCEEDED, and frees its slot.
func TestDeadlineOverGRPC(t *testing.T) {
	limits := core.DefaultLimits()
	limits.MaxInFlight = 1
	gate := newGate()
	e := serveWith(t, 1, limits, gate.wrap)
	req := oneFeature(e, "user-0")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.client.GetOnlineFeatures(ctx, req)
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Fatalf("read held past the deadline: err = %v, want DEADLINE_EXCEEDED", err)
	}
	<-gate.entered
	// The timed-out request gave its only slot back although its read was
	// never let through: the next request reaches the store (and times out
	// there too) instead of being refused.
	testutil.Eventually(t, 10*time.Second, "the timed-out request's slot to be free", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := e.client.GetOnlineFeatures(ctx, req)
		if code := status.Code(err); code != codes.DeadlineExceeded {
			return fmt.Errorf("next request: %v, want DEADLINE_EXCEEDED from inside the store", err)
		}
		select {
		case <-gate.entered:
			return nil
		default:
			return errors.New("next request timed out without reaching the store")
		}
	})
	close(gate.release)
	if _, err := e.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), req); err != nil {
		t.Fatalf("request with the gate open: %v", err)
	}
}
