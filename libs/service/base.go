package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

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
}

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

// Close releases what New acquired (listeners, telemetry) for a service
// whose construction failed after New; a service that runs releases them
// in Run instead.
func (b *Base) Close() error {
	var errs []error
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
// offsets), then telemetry is flushed.
func (b *Base) Run(ctx context.Context, workers ...func(context.Context) error) error {
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
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if terr := b.Tel.Shutdown(sctx); terr != nil {
		err = errors.Join(err, fmt.Errorf("telemetry: %w", terr))
	}
	b.Log.Info("service stopped", "err", err)
	return err
}
