package scylla_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/libs/testutil"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/cqlserver"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/scylla"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/storetest"
)

// HostsEnv names a real ScyllaDB to run the suite against as well.
const HostsEnv = "TRIBUTARY_SCYLLA_HOSTS"

var seq atomic.Int64

func cqlServer(t testing.TB) *cqlserver.Server {
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

func openStore(t testing.TB, hosts []string, keyspace string, edits ...func(*scylla.Config)) core.TileStore {
	t.Helper()
	cfg := scylla.DefaultConfig()
	for _, e := range edits {
		e(&cfg)
	}
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
	defer goleak.VerifyNone(t, append(testutil.LeakOptions(), goleak.IgnoreCurrent())...)
	storetest.Run(t, func(t *testing.T) func() core.TileStore {
		srv := cqlServer(t)
		return func() core.TileStore { return openStore(t, []string{srv.Addr()}, "tributary") }
	})
}

// TestConformanceWithoutTileCache runs the suite with every row decoded.
func TestConformanceWithoutTileCache(t *testing.T) {
	defer goleak.VerifyNone(t, append(testutil.LeakOptions(), goleak.IgnoreCurrent())...)
	storetest.Run(t, func(t *testing.T) func() core.TileStore {
		srv := cqlServer(t)
		return func() core.TileStore {
			return openStore(t, []string{srv.Addr()}, "tributary", func(c *scylla.Config) { c.TileCacheBytes = 0 })
		}
	})
}

// TestTinyTileCacheServesCurrentTiles reads and rewrites tiles through a
// cache too small to hold them, so every read evicts: the answers are
// still the stored tiles.
func TestTinyTileCacheServesCurrentTiles(t *testing.T) {
	srv := cqlServer(t)
	s := openStore(t, []string{srv.Addr()}, "tributary", func(c *scylla.Config) { c.TileCacheBytes = 64 })
	defer s.Close()
	ctx := context.Background()
	base := int64(1_700_006_400_000)
	for round := range 4 {
		var ws []core.TileWrite
		for i := range 5 {
			ws = append(ws, core.TileWrite{Tile: storetest.Tile("v", "u", 300_000, base+int64(i)*300_000, round*10+i), ExpiresMs: time.Now().Add(time.Hour).UnixMilli()})
		}
		if err := s.PutTiles(ctx, ws); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			got, err := s.GetTiles(ctx, "v", "u", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ws) {
				t.Fatalf("round %d: %d tiles, want %d", round, len(got), len(ws))
			}
			for i := range ws {
				if g := got[i].Full("v", "u"); !reflect.DeepEqual(g, ws[i].Tile) {
					t.Fatalf("round %d tile %d: %+v, want %+v", round, i, g, ws[i].Tile)
				}
			}
		}
	}
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

// BenchmarkGetTiles reads an entity of 200 tiles from the in-process CQL
// server, decoding every row or taking unchanged tiles from the cache.
func BenchmarkGetTiles(b *testing.B) {
	for _, bc := range []struct {
		name  string
		bytes int64
	}{{"decode", 0}, {"cached", 64 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := cqlServer(b)
			s := openStore(b, []string{srv.Addr()}, "tributary", func(c *scylla.Config) { c.TileCacheBytes = bc.bytes })
			defer s.Close()
			storetest.BenchmarkGetTiles(b, s)
		})
	}
}

// TestSchemaChangeSlowerThanARequest: creating the keyspace and table takes
// a real server seconds (Cassandra agrees on the schema), far beyond the
// request timeout of reads and writes; Open must still succeed. (Found on
// Apache Cassandra: with the default 500ms timeout Open failed.)
func TestSchemaChangeSlowerThanARequest(t *testing.T) {
	srv := cqlServer(t)
	srv.SetSchemaDelay(time.Second)
	cfg := scylla.DefaultConfig()
	cfg.Hosts, cfg.Consistency, cfg.Timeout = []string{srv.Addr()}, "ONE", 200*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := scylla.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetTiles(ctx, "v", "u", nil); err != nil {
		t.Fatal(err)
	}
}
