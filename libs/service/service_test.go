package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBaseServesAdminAndGRPCAndStopsCleanly(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	common := config.Common{KafkaBrokers: "127.0.0.1:9", AdminAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", LogLevel: "error"}
	b, err := New(ctx, "test", common, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	depErr := errors.New("kafka unreachable")
	var failing atomic.Bool
	failing.Store(true)
	b.Admin.AddCheck("kafka", func() error {
		if failing.Load() {
			return depErr
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	workerStopped := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Run(runCtx, func(ctx context.Context) error {
			<-ctx.Done()
			close(workerStopped)
			return nil
		})
	}()
	admin := "http://" + b.AdminAddr()
	testutil.Eventually(t, 5*time.Second, "admin server up", func() error {
		resp, err := client.Get(admin + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if code, body := get(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != 503 || !strings.Contains(body, "kafka: kafka unreachable") {
		t.Errorf("/readyz with a failing check = %d %q, want 503 naming the check", code, body)
	}
	failing.Store(false)
	if code, _ := get(t, admin+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	if code, body := get(t, admin+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, no Go runtime metrics", code)
	}

	conn, err := grpc.NewClient(b.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hc, err)
	}
	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	lr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "grpc.health.v1.Health") {
		t.Errorf("reflection lists %v, want grpc.health.v1.Health", names)
	}
	_ = rc.CloseSend()
	// A call was made, so the request counter is exported.
	if _, body := get(t, admin+"/metrics"); !strings.Contains(body, "tributary_grpc_server_requests_total") {
		t.Error("/metrics has no tributary_grpc_server_requests_total after a gRPC call")
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after a clean stop", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of cancellation")
	}
	<-workerStopped
	if _, err := client.Get(admin + "/healthz"); err == nil {
		t.Error("admin server still answering after Run returned")
	}
	conn.Close()
}

func TestNewRejectsBadConfigNamingField(t *testing.T) {
	_, err := New(context.Background(), "test", config.Common{KafkaBrokers: "x:1", AdminAddr: "nope", LogLevel: "info"}, false, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "admin-addr") {
		t.Fatalf("err = %v, want one naming admin-addr", err)
	}
}

func TestNewReportsPortInUse(t *testing.T) {
	ctx := context.Background()
	a, err := New(ctx, "a", config.Common{KafkaBrokers: "x:1", AdminAddr: "127.0.0.1:0", LogLevel: "info"}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.adminLis.Close()
	_, err = New(ctx, "b", config.Common{KafkaBrokers: "x:1", AdminAddr: a.AdminAddr(), LogLevel: "info"}, false, nil)
	if err == nil || !strings.Contains(err.Error(), "admin-addr") {
		t.Fatalf("err = %v, want a listen error naming admin-addr", err)
	}
}
