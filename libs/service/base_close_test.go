package service

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/testutil"
)

func newLoopback(t *testing.T) *Base {
	t.Helper()
	b, err := New(context.Background(), "svc", config.Common{KafkaBrokers: "127.0.0.1:9092", AdminAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", LogLevel: "error"}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCloseReleasesThePorts: a service built but never run is closed, its
// registered resources are released (last first) and its ports are free
// again at once; a second Close and a Run after it do nothing.
func TestCloseReleasesThePorts(t *testing.T) {
	b := newLoopback(t)
	var released []string
	b.OnRelease(func() error { released = append(released, "store"); return nil })
	b.OnRelease(func() error { released = append(released, "producer"); return errors.New("producer: flush") })
	addrs := []string{b.AdminAddr(), b.GRPCAddr()}
	if err := b.Close(); err == nil || err.Error() != "producer: flush" {
		t.Fatalf("Close = %v, want the release error", err)
	}
	if want := []string{"producer", "store"}; !slices.Equal(released, want) {
		t.Fatalf("released %v, want %v", released, want)
	}
	for _, a := range addrs {
		lis, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s still bound after Close: %v", a, err)
		}
		_ = lis.Close()
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := b.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	if len(released) != 2 {
		t.Fatalf("resources released %d times, want once each", len(released))
	}
}

// TestRunReleasesOnceAndCloseAfterRunDoesNothing: Run releases the
// registered resources after its workers stopped; Close during or after
// Run leaves that to Run.
func TestRunReleasesOnceAndCloseAfterRunDoesNothing(t *testing.T) {
	b := newLoopback(t)
	workerDone := false
	var released int
	b.OnRelease(func() error {
		if !workerDone {
			t.Error("released before the worker stopped")
		}
		released++
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			workerDone = true
			return nil
		})
	}()
	<-started
	if err := b.Close(); err != nil {
		t.Fatalf("Close while running = %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close after Run = %v", err)
	}
	if released != 1 {
		t.Fatalf("released %d times, want 1", released)
	}
	testutil.Eventually(t, 5*time.Second, "the admin port to be free", func() error {
		lis, err := net.Listen("tcp", b.AdminAddr())
		if err != nil {
			return err
		}
		return lis.Close()
	})
}
