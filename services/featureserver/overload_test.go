package featureserver_test

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
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver"
)

// gatedStore holds every read until release is closed (or the read's
// context ends), reporting each held read on entered.
type gatedStore struct {
	featureserver.TileStore
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) GetTiles(ctx context.Context, view, entity string, dst []*tiles.Tile) ([]*tiles.Tile, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	return g.TileStore.GetTiles(ctx, view, entity, dst)
}

// TestOverloadOverGRPC fills the running service's in-flight limit with
// reads held inside the (embedded) store, then checks through the real
// gRPC listener that one more request is refused with RESOURCE_EXHAUSTED
// at once, that a request whose deadline passes while it waits for the
// store gets DEADLINE_EXCEEDED, and that the server takes requests again
// once the held ones finished.
func TestOverloadOverGRPC(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	cfg := config(t, brokers, featuresDir, t.TempDir())
	cfg.Limits.MaxInFlight = 2
	gate := &gatedStore{entered: make(chan struct{}, 8), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	clk := &clock{now: now}
	fs := startWith(t, cfg, featureserver.Deps{Now: clk.Now, WrapStore: func(s featureserver.TileStore) featureserver.TileStore {
		gate.TileStore = s
		return gate
	}})
	req := &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{"clicks:count_1h"},
		Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u1"}}},
	}

	held := make(chan error, cfg.Limits.MaxInFlight)
	for range cfg.Limits.MaxInFlight {
		go func() {
			_, err := fs.client.GetOnlineFeatures(testutil.Context(t, 20*time.Second), req)
			held <- err
		}()
	}
	for i := range cfg.Limits.MaxInFlight {
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d requests reached the store within 10s", i, cfg.Limits.MaxInFlight)
		}
	}

	_, err := fs.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), req)
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "retry with backoff") {
		t.Fatalf("request over the in-flight limit: err = %v, want RESOURCE_EXHAUSTED telling to retry with backoff", err)
	}

	// The held requests finish once their reads are let through, and free
	// their slots.
	close(gate.release)
	released = true
	for range cfg.Limits.MaxInFlight {
		if err := <-held; err != nil {
			t.Fatalf("held request: %v", err)
		}
	}
	resp, err := fs.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), req)
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
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	cfg := config(t, brokers, featuresDir, t.TempDir())
	cfg.Limits.MaxInFlight = 1
	gate := &gatedStore{entered: make(chan struct{}, 8), release: make(chan struct{})}
	clk := &clock{now: now}
	fs := startWith(t, cfg, featureserver.Deps{Now: clk.Now, WrapStore: func(s featureserver.TileStore) featureserver.TileStore {
		gate.TileStore = s
		return gate
	}})
	req := &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{"clicks:count_1h"},
		Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u1"}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := fs.client.GetOnlineFeatures(ctx, req)
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
		_, err := fs.client.GetOnlineFeatures(ctx, req)
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
	if _, err := fs.client.GetOnlineFeatures(testutil.Context(t, 10*time.Second), req); err != nil {
		t.Fatalf("request with the gate open: %v", err)
	}
}
