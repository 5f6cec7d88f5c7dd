package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/telemetry"
)

// Base is what every service is built on: logger, telemetry, the admin
// server and, for services that serve it, gRPC. New binds the listeners, so
// a port already in use is reported before any work starts.
type Base struct {
	Name  string
	Log   *slog.Logger
	Tel   *telemetry.Telemetry
	Admin *Admin
	// GRPC is nil for services without a gRPC API.
	GRPC *GRPC

	adminLis net.Listener
	grpcLis  net.Listener

	// state is built, running or closed: whichever of Run and Close comes
	// first owns the release of what New and the service acquired.
	state   atomic.Int32
	mu      sync.Mutex
	release []func() error
}

const (
	stateBuilt int32 = iota
	stateRunning
	stateClosed
)

// ErrClosed is returned by Run on a service that was closed before it ran.
var ErrClosed = errors.New("service closed before it ran")

// New builds the base of service name from the shared flags. log may be
// nil; opts go to the gRPC server (with withGRPC).
func New(ctx context.Context, name string, c config.Common, withGRPC bool, log *slog.Logger, opts ...grpc.ServerOption) (*Base, error) {
	if err := c.Validate(withGRPC); err != nil {
		return nil, err
	}
	if log == nil {
		log = config.NewLogger(c.LogLevel, name)
	}
	var topts []telemetry.Option
	if c.SpanExporter != nil {
		topts = append(topts, telemetry.WithSpanExporter(c.SpanExporter))
	}
	tel, err := telemetry.New(ctx, name, c.OTLPEndpoint, topts...)
	if err != nil {
		return nil, err
	}
	b := &Base{Name: name, Log: log, Tel: tel, Admin: NewAdmin(tel.Handler())}
	if b.adminLis, err = Listen("admin-addr", c.AdminAddr); err != nil {
		return nil, err
	}
	if withGRPC {
		if b.GRPC, err = NewGRPC(tel, opts...); err != nil {
			_ = b.adminLis.Close()
			return nil, err
		}
		if b.grpcLis, err = Listen("grpc-addr", c.GRPCAddr); err != nil {
			_ = b.adminLis.Close()
			return nil, err
		}
	}
	return b, nil
}

// OnRelease registers a resource of the service (a store, a producer, a
// client connection) to release when the service stops: after Run's
// servers and workers finished, or by Close when the service never runs.
// Resources are released in reverse order of registration.
func (b *Base) OnRelease(release func() error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.release = append(b.release, release)
}

// releaseAll runs the registered releases, last registered first.
func (b *Base) releaseAll() error {
	b.mu.Lock()
	rs := b.release
	b.release = nil
	b.mu.Unlock()
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		if err := rs[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close releases a service that was built but will not run: the
// resources registered with OnRelease, the listeners and telemetry. It is
// safe to call at any time and more than once; once Run started, Run owns
// the release and Close does nothing.
func (b *Base) Close() error {
	if !b.state.CompareAndSwap(stateBuilt, stateClosed) {
		return nil
	}
	errs := []error{b.releaseAll()}
	if b.GRPC != nil {
		b.GRPC.Server.Stop() // its stream workers run from construction
	}
	for _, lis := range []net.Listener{b.adminLis, b.grpcLis} {
		if lis != nil {
			if err := lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := b.Tel.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: %w", err))
	}
	return errors.Join(errs...)
}

// AdminAddr is the admin server's bound address.
func (b *Base) AdminAddr() string { return b.adminLis.Addr().String() }

// GRPCAddr is the gRPC server's bound address, or "" without gRPC.
func (b *Base) GRPCAddr() string {
	if b.grpcLis == nil {
		return ""
	}
	return b.grpcLis.Addr().String()
}

// Run serves the admin and gRPC servers and runs workers until ctx ends or
// one of them fails. The service is ready once everything started (and its
// readiness checks pass); when ctx ends it is marked not ready first, then
// servers drain and workers finish (flushing producers and committing
// offsets), then the resources registered with OnRelease are released and
// telemetry is flushed. Run on a closed service returns ErrClosed.
func (b *Base) Run(ctx context.Context, workers ...func(context.Context) error) error {
	if !b.state.CompareAndSwap(stateBuilt, stateRunning) {
		return ErrClosed
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Admin.Serve(gctx, b.adminLis) })
	if b.GRPC != nil {
		g.Go(func() error { return b.GRPC.Serve(gctx, b.grpcLis) })
		b.GRPC.SetServing(true)
	}
	for _, w := range workers {
		g.Go(func() error { return w(gctx) })
	}
	b.Admin.SetReady(true)
	b.Log.Info("service started", "admin", b.AdminAddr(), "grpc", b.GRPCAddr())
	go func() {
		<-gctx.Done()
		b.Admin.SetReady(false)
		if b.GRPC != nil {
			b.GRPC.SetServing(false)
		}
	}()
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	if rerr := b.releaseAll(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if terr := b.Tel.Shutdown(sctx); terr != nil {
		err = errors.Join(err, fmt.Errorf("telemetry: %w", terr))
	}
	b.Log.Info("service stopped", "err", err)
	return err
}
