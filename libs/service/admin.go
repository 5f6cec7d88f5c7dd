// Package service holds the lifecycle every Tributary service shares: the
// admin HTTP server (/healthz, /readyz, /metrics), a gRPC server with health,
// reflection and request metrics, and graceful shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ShutdownGrace bounds how long servers drain in-flight work on shutdown.
const ShutdownGrace = 10 * time.Second

// Admin is a service's admin HTTP server. It is ready only when SetReady(true)
// was called and every registered check passes.
type Admin struct {
	mux    *http.ServeMux
	ready  atomic.Bool
	mu     sync.Mutex
	checks map[string]func() error
	// details are shown in /readyz's body without affecting readiness.
	details map[string]func() string
}

// NewAdmin returns an admin server that serves metrics on /metrics.
func NewAdmin(metrics http.Handler) *Admin {
	a := &Admin{mux: http.NewServeMux(), checks: map[string]func() error{}, details: map[string]func() string{}}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.serveReady)
	a.mux.Handle("GET /metrics", metrics)
	return a
}

// Handle adds a route (for example the Open Inference Protocol REST routes).
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// SetReady marks the service ready or not ready.
func (a *Admin) SetReady(ready bool) { a.ready.Store(ready) }

// AddCheck registers a readiness check; a non-nil error makes /readyz fail
// and is shown in its body.
func (a *Admin) AddCheck(name string, check func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = check
}

// AddDetail registers a line shown in /readyz's body (as "name: detail",
// when detail returns non-empty) without affecting readiness: for example a
// refused model artifact while the previous version keeps serving.
func (a *Admin) AddDetail(name string, detail func() string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.details[name] = detail
}

// detailLines returns the non-empty details, sorted by name.
func (a *Admin) detailLines() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.details))
	for n := range a.details {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		if d := a.details[n](); d != "" {
			b.WriteString(n + ": " + d + "\n")
		}
	}
	return b.String()
}

// Ready reports readiness and the failing checks.
func (a *Admin) Ready() (bool, []string) {
	var failing []string
	if !a.ready.Load() {
		failing = append(failing, "service: not started or shutting down")
	}
	a.mu.Lock()
	names := make([]string, 0, len(a.checks))
	for n := range a.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := a.checks[n](); err != nil {
			failing = append(failing, n+": "+err.Error())
		}
	}
	a.mu.Unlock()
	return len(failing) == 0, failing
}

func (a *Admin) serveReady(w http.ResponseWriter, _ *http.Request) {
	ok, failing := a.Ready()
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n" + strings.Join(failing, "\n") + "\n" + a.detailLines()))
		return
	}
	_, _ = w.Write([]byte("ready\n" + a.detailLines()))
}

// Serve serves the admin routes on lis until ctx ends, then shuts down.
func (a *Admin) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	return ServeHTTP(ctx, srv, lis)
}

// ServeHTTP serves srv on lis until ctx ends, then shuts it down gracefully.
func ServeHTTP(ctx context.Context, srv *http.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown http on %s: %w", lis.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Listen opens a TCP listener and names the address on error.
func Listen(field, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", field, addr, err)
	}
	return lis, nil
}
