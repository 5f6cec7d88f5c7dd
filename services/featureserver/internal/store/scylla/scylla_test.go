package scylla_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/cqlserver"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/scylla"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/storetest"
)

// HostsEnv names a real ScyllaDB to run the suite against as well.
const HostsEnv = "TRIBUTARY_SCYLLA_HOSTS"

var seq atomic.Int64

func cqlServer(t *testing.T) *cqlserver.Server {
	t.Helper()
	srv, err := cqlserver.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func openStore(t *testing.T, hosts []string, keyspace string) core.TileStore {
	t.Helper()
	cfg := scylla.DefaultConfig()
	cfg.Hosts, cfg.Keyspace = hosts, keyspace
	cfg.Consistency = "ONE"
	cfg.Timeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := scylla.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceOnCQLServer(t *testing.T) {
	// Sessions that were opened and closed leave no goroutine behind. (A
	// failed gocql.CreateSession does, so goleak is not run for the
	// whole package.)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	storetest.Run(t, func(t *testing.T) func() core.TileStore {
		srv := cqlServer(t)
		return func() core.TileStore { return openStore(t, []string{srv.Addr()}, "tributary") }
	})
}

func TestConformanceOnScyllaDB(t *testing.T) {
	hosts := config.SplitList(os.Getenv(HostsEnv))
	if len(hosts) == 0 {
		t.Skipf("%s is not set: no real ScyllaDB to run the suite against", HostsEnv)
	}
	storetest.Run(t, func(t *testing.T) func() core.TileStore {
		ks := fmt.Sprintf("tributary_test_%d_%d", time.Now().UnixNano()%1_000_000, seq.Add(1))
		return func() core.TileStore { return openStore(t, hosts, ks) }
	})
}

func TestStatementsArePrepared(t *testing.T) {
	srv := cqlServer(t)
	s := openStore(t, []string{srv.Addr()}, "tributary")
	defer s.Close()
	ctx := context.Background()
	w := core.TileWrite{Tile: storetest.Tile("v", "u", 0, 0, 1)}
	round := func() {
		t.Helper()
		if err := s.PutTiles(ctx, []core.TileWrite{w}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetTiles(ctx, "v", "u", nil); err != nil {
			t.Fatal(err)
		}
	}
	// The driver prepares each statement on the connections it uses, once.
	round()
	round()
	prepared, executed := srv.Requests("prepare"), srv.Requests("execute")
	for range 5 {
		round()
	}
	if p, e := srv.Requests("prepare"), srv.Requests("execute"); p != prepared || e != executed+10 {
		t.Fatalf("after 5 more rounds: prepare %d → %d, execute %d → %d; want no new PREPARE and 10 EXECUTE", prepared, p, executed, e)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		edit  func(*scylla.Config)
		field string
	}{
		{func(c *scylla.Config) { c.Hosts = nil }, "scylla-hosts"},
		{func(c *scylla.Config) { c.Keyspace = "bad-name" }, "scylla-keyspace"},
		{func(c *scylla.Config) { c.Consistency = "MOST" }, "scylla-consistency"},
		{func(c *scylla.Config) { c.Replication = "3" }, "scylla-replication"},
		{func(c *scylla.Config) { c.Retries = -1 }, "scylla-retries"},
		{func(c *scylla.Config) { c.Timeout = 0 }, "scylla-timeout"},
	}
	for _, tc := range tests {
		cfg := scylla.DefaultConfig()
		tc.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("err = %v, want it to name %s", err, tc.field)
		}
	}
	if err := scylla.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableClusterIsAnError(t *testing.T) {
	cfg := scylla.DefaultConfig()
	cfg.Hosts = []string{"127.0.0.1:1"}
	cfg.ConnectTimeout = time.Second
	if _, err := scylla.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "connect to scylla") {
		t.Fatalf("err = %v", err)
	}
}
