package cqlserver_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/featureserver/internal/cqlserver"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func session(t *testing.T) (*gocql.Session, *cqlserver.Server, *clock) {
	t.Helper()
	srv, err := cqlserver.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	srv.SetClock(clk.Now)
	c := gocql.NewCluster(srv.Addr())
	c.ProtoVersion = 4
	c.Timeout = 5 * time.Second
	c.Consistency = gocql.One
	s, err := c.CreateSession()
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, q := range []string{
		"CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TABLE ks.t (p text, c bigint, v blob, PRIMARY KEY ((p), c)) WITH CLUSTERING ORDER BY (c ASC)",
	} {
		if err := s.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return s, srv, clk
}

func TestTTLExpiresRows(t *testing.T) {
	s, _, clk := session(t)
	for _, q := range []struct {
		c   int64
		ttl int
	}{{3, 10}, {1, 0}, {2, 60}} {
		if err := s.Query("INSERT INTO ks.t (p, c, v) VALUES (?, ?, ?) USING TTL ?", "a", q.c, []byte{byte(q.c)}, q.ttl).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []int64 {
		it := s.Query("SELECT c, v FROM ks.t WHERE p = ?", "a").Iter()
		var cs []int64
		var c int64
		var v []byte
		for it.Scan(&c, &v) {
			cs = append(cs, c)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		return cs
	}
	if got := read(); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("rows %v, want 1 2 3 in clustering order", got)
	}
	clk.Add(30 * time.Second)
	if got := read(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("after 30s: rows %v, want 1 2 (3 had a 10s TTL)", got)
	}
	clk.Add(time.Hour)
	if got := read(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after an hour: rows %v, want 1 (no TTL)", got)
	}
}

func TestUnsupportedStatementsGetAnError(t *testing.T) {
	s, _, _ := session(t)
	tests := []struct{ q, want string }{
		{"DROP TABLE ks.t", "unsupported statement"},
		{"SELECT c FROM ks.nope WHERE p = 'a'", "unconfigured table"},
		{"SELECT c FROM ks.t WHERE c = 1", "partition key column p must be restricted"},
		{"INSERT INTO ks.t (c, v) VALUES (1, 0x00)", "unsupported literal"},
		{"INSERT INTO ks.t (c) VALUES (?)", "primary key parts are missing: p"},
		// Apache Cassandra answers this too: VIEW is a reserved word.
		{"CREATE TABLE ks.r (view text, c bigint, PRIMARY KEY ((view), c))", "no viable alternative at input 'view'"},
	}
	for _, tc := range tests {
		err := s.Query(tc.q).Exec()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.q, err, tc.want)
		}
	}
}
