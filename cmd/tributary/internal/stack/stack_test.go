package stack

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// reservePorts returns n loopback addresses that were free a moment ago.
func reservePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, lis.Addr().String())
		if err := lis.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return addrs
}

// TestFailedStartReleasesEveryBuiltService: when the last service (ingest)
// cannot be built, because its admin port is taken, the services built
// before it are released: every port they had bound can be bound again at
// once, and no goroutine of theirs is left (TestMain's goleak check).
func TestFailedStartReleasesEveryBuiltService(t *testing.T) {
	example := filepath.Join("..", "..", "..", "..", "examples", "fraud")
	keys := []string{
		"featureserver.admin-addr", "featureserver.grpc-addr", "featurizer.admin-addr",
		"metrics.admin-addr", "metrics.grpc-addr", "modelserver.admin-addr", "modelserver.grpc-addr",
	}
	addrs := map[string]string{}
	for i, a := range reservePorts(t, len(keys)) {
		addrs[keys[i]] = a
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addrs["ingest.admin-addr"] = taken.Addr().String()

	ctx := testutil.Context(t, time.Minute)
	st, err := Start(ctx, Config{
		FreePorts:   true,
		Addrs:       addrs,
		DataDir:     t.TempDir(),
		PostgresDSN: "postgres://tributary@127.0.0.1:1/tributary", // never reached: ingest fails first
		FeaturesDir: filepath.Join(example, "features"),
		ModelsDir:   filepath.Join(example, "models"),
		LogLevel:    "error",
	})
	if err == nil {
		_ = st.Close()
		t.Fatal("Start succeeded with ingest's admin port taken")
	}
	if !strings.Contains(err.Error(), "ingest") || !strings.Contains(err.Error(), "admin-addr") {
		t.Fatalf("Start: %v, want an error naming ingest's admin-addr", err)
	}
	for _, k := range keys {
		lis, err := net.Listen("tcp", addrs[k])
		if err != nil {
			t.Errorf("%s (%s) still bound after the failed start: %v", k, addrs[k], err)
			continue
		}
		_ = lis.Close()
	}
}

// TestCloseReleasesAStackThatNeverRan: a built stack that is closed
// instead of run frees its ports; Run after Close refuses.
func TestCloseReleasesAStackThatNeverRan(t *testing.T) {
	example := filepath.Join("..", "..", "..", "..", "examples", "fraud")
	st, err := Start(context.Background(), Config{
		FreePorts:   true,
		DataDir:     t.TempDir(),
		FeaturesDir: filepath.Join(example, "features"),
		ModelsDir:   filepath.Join(example, "models"),
		LogLevel:    "error",
	})
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{st.Featureserver.GRPCAddr(), st.Modelserver.GRPCAddr(), st.Metrics.GRPCAddr()}
	for _, a := range st.AdminAddrs() {
		addrs = append(addrs, a)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, a := range addrs {
		lis, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still bound after Close: %v", a, err)
			continue
		}
		_ = lis.Close()
	}
	if err := st.Run(context.Background()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}
