// Package scylla is the featureserver's production online store: tiles in
// ScyllaDB through gocqlx on the shard-aware scylladb/gocql driver. A
// partition holds one (view, entity); its rows are the tiles clustered by
// resolution and start, so one single-partition read returns an entity's
// tiles in the order the read path merges them. Tiles carry a TTL equal to
// the time left until no window can read them. Statements are prepared
// (the driver prepares and caches them) and routed token-aware.
package scylla

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"github.com/scylladb/gocqlx/v2"
	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

var (
	_ core.TileStore   = (*Store)(nil)
	_ core.StableTiles = (*Store)(nil)
)

// Config configures the ScyllaDB store.
type Config struct {
	Hosts    []string
	Keyspace string
	// Replication is the keyspace's replication map, used when the
	// keyspace is created.
	Replication string
	// Consistency of reads and writes (ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, ...).
	Consistency string
	// LocalDC routes to this data center first when set.
	LocalDC string
	// Timeout bounds one request; ConnectTimeout a connection attempt;
	// SchemaTimeout one schema change (CREATE KEYSPACE/TABLE) at start.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	SchemaTimeout  time.Duration
	// Retries is how often a failed idempotent request is retried.
	Retries int
	// WriteConcurrency bounds the partitions written at once by a batch.
	WriteConcurrency int
	// NumConns is the connections per host (per shard on ScyllaDB).
	NumConns int
	// TileCacheBytes bounds the encoded size of the decoded tiles kept so
	// that unchanged tiles are not decoded again on every read (their
	// memory is a few times that); 0 disables the cache.
	TileCacheBytes int64
	Now            func() time.Time
	Log            *slog.Logger
}

// DefaultConfig is a single local node.
func DefaultConfig() Config {
	return Config{
		Hosts:            []string{"127.0.0.1:9042"},
		Keyspace:         "tributary",
		Replication:      "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		Consistency:      "LOCAL_QUORUM",
		Timeout:          500 * time.Millisecond,
		ConnectTimeout:   5 * time.Second,
		SchemaTimeout:    30 * time.Second,
		Retries:          2,
		WriteConcurrency: 32,
		NumConns:         2,
		TileCacheBytes:   128 << 20,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case len(c.Hosts) == 0:
		return errors.New("scylla-hosts: at least one host is required")
	case !validIdent(c.Keyspace):
		return fmt.Errorf("scylla-keyspace: %q must be letters, digits and _", c.Keyspace)
	case !strings.HasPrefix(strings.TrimSpace(c.Replication), "{"):
		return fmt.Errorf("scylla-replication: %q is not a CQL map like {'class': 'NetworkTopologyStrategy', 'dc1': 3}", c.Replication)
	case c.Timeout <= 0:
		return fmt.Errorf("scylla-timeout: %s, want a positive duration", c.Timeout)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("scylla-connect-timeout: %s, want a positive duration", c.ConnectTimeout)
	case c.Retries < 0:
		return fmt.Errorf("scylla-retries: %d, want 0 or more", c.Retries)
	case c.WriteConcurrency < 1:
		return fmt.Errorf("scylla-write-concurrency: %d, want at least 1", c.WriteConcurrency)
	case c.NumConns < 1:
		return fmt.Errorf("scylla-num-conns: %d, want at least 1", c.NumConns)
	case c.TileCacheBytes < 0:
		return fmt.Errorf("scylla-tile-cache-mb: %d bytes, want 0 or more", c.TileCacheBytes)
	}
	if _, err := gocql.ParseConsistencyWrapper(c.Consistency); err != nil {
		return fmt.Errorf("scylla-consistency: %q is not a consistency level such as LOCAL_QUORUM", c.Consistency)
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Store is the ScyllaDB tile store.
type Store struct {
	cfg     Config
	session gocqlx.Session
	insert  string
	sel     string
	cache   *tileCache // nil when disabled
	compact *core.TileCompactor
}

// Open connects, creates the keyspace and table when missing, and returns
// the store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// The schema first, on a session of its own: a schema change waits for
	// the cluster to agree on it, which takes seconds on a real server,
	// far beyond the request timeout meant for reads and writes.
	ddl, err := gocqlx.WrapSession(cluster(cfg, max(cfg.Timeout, cfg.SchemaTimeout)).CreateSession())
	if err != nil {
		return nil, fmt.Errorf("connect to scylla %s: %w", strings.Join(cfg.Hosts, ","), err)
	}
	err = createSchema(ctx, ddl, cfg)
	ddl.Close()
	if err != nil {
		return nil, err
	}
	session, err := gocqlx.WrapSession(cluster(cfg, cfg.Timeout).CreateSession())
	if err != nil {
		return nil, fmt.Errorf("connect to scylla %s: %w", strings.Join(cfg.Hosts, ","), err)
	}
	tbl := cfg.Keyspace + ".tiles"
	s := &Store{
		cfg:     cfg,
		session: session,
		insert:  "INSERT INTO " + tbl + " (view_name, entity, res_ms, start_ms, max_event_ms, features) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
		sel:     "SELECT res_ms, start_ms, max_event_ms, features FROM " + tbl + " WHERE view_name = ? AND entity = ?",
		cache:   newTileCache(cfg.TileCacheBytes),
		compact: core.NewTileCompactor(),
	}
	return s, nil
}

// cluster is the driver configuration of cfg with request timeout timeout.
func cluster(cfg Config, timeout time.Duration) *gocql.ClusterConfig {
	cons, _ := gocql.ParseConsistencyWrapper(cfg.Consistency)
	c := gocql.NewCluster(cfg.Hosts...)
	c.ProtoVersion = 4
	c.Consistency = cons
	c.Timeout = timeout
	c.ReadTimeout = timeout
	c.WriteTimeout = timeout
	c.ConnectTimeout = cfg.ConnectTimeout
	c.NumConns = cfg.NumConns
	c.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: cfg.Retries, Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	c.Logger = slogger{cfg.Log}
	return c
}

func createSchema(ctx context.Context, session gocqlx.Session, cfg Config) error {
	stmts := []string{
		"CREATE KEYSPACE IF NOT EXISTS " + cfg.Keyspace + " WITH replication = " + cfg.Replication,
		"CREATE TABLE IF NOT EXISTS " + cfg.Keyspace + ".tiles (" +
			// view_name, not view: VIEW is a reserved word of CQL (Cassandra
			// refuses it unquoted; the in-process CQL server does too).
			"view_name text, entity text, res_ms bigint, start_ms bigint, max_event_ms bigint, features blob, " +
			"PRIMARY KEY ((view_name, entity), res_ms, start_ms)" +
			") WITH CLUSTERING ORDER BY (res_ms ASC, start_ms ASC)",
	}
	for _, st := range stmts {
		if err := session.ContextQuery(ctx, st, nil).ExecRelease(); err != nil {
			return fmt.Errorf("create schema (%s): %w", strings.SplitN(st, "(", 2)[0], err)
		}
	}
	return nil
}

// ttl is the seconds until expiresMs; ok is false when it has passed.
func (s *Store) ttl(expiresMs int64) (int, bool) {
	if expiresMs == 0 {
		return 0, true
	}
	left := expiresMs - s.cfg.Now().UnixMilli()
	if left <= 0 {
		return 0, false
	}
	secs := (left + 999) / 1000
	const maxTTL = 630_720_000 // 20 years, the most CQL accepts
	return int(min(secs, maxTTL)), true
}

type rowArgs struct {
	t   *tiles.Tile
	ttl int
	fs  []byte
}

// PutTiles implements core.TileStore: the tiles of one partition go in one
// unlogged batch (a single-partition write), partitions in parallel.
func (s *Store) PutTiles(ctx context.Context, batch []core.TileWrite) error {
	type pkey struct{ view, entity string }
	parts := map[pkey][]rowArgs{}
	var order []pkey
	for _, w := range batch {
		ttl, ok := s.ttl(w.ExpiresMs)
		if !ok {
			continue
		}
		fs, err := json.Marshal(w.Tile.Features)
		if err != nil {
			return fmt.Errorf("encode tile %s: %w", w.Tile.Key(), err)
		}
		k := pkey{w.Tile.View, w.Tile.Entity}
		if _, ok := parts[k]; !ok {
			order = append(order, k)
		}
		parts[k] = append(parts[k], rowArgs{t: w.Tile, ttl: ttl, fs: fs})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.WriteConcurrency)
	for _, k := range order {
		rows := parts[k]
		g.Go(func() error { return s.writePartition(gctx, rows) })
	}
	return g.Wait()
}

func (s *Store) writePartition(ctx context.Context, rows []rowArgs) error {
	if len(rows) == 1 {
		r := rows[0]
		q := s.session.ContextQuery(ctx, s.insert, nil).Bind(r.t.View, r.t.Entity, r.t.ResolutionMs, r.t.StartMs, r.t.MaxEventMs, r.fs, r.ttl)
		q.Idempotent(true)
		if err := q.ExecRelease(); err != nil {
			return fmt.Errorf("write tile %s: %w", r.t.Key(), err)
		}
		return nil
	}
	b := s.session.Session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	// Later writes of a key in one batch would tie on timestamp; keep the last.
	seen := map[[2]int64]int{}
	for i, r := range rows {
		seen[[2]int64{r.t.ResolutionMs, r.t.StartMs}] = i
	}
	for i, r := range rows {
		if seen[[2]int64{r.t.ResolutionMs, r.t.StartMs}] != i {
			continue
		}
		b.Query(s.insert, r.t.View, r.t.Entity, r.t.ResolutionMs, r.t.StartMs, r.t.MaxEventMs, r.fs, r.ttl)
	}
	if err := s.session.Session.ExecuteBatch(b); err != nil {
		return fmt.Errorf("write %d tiles of %s %q: %w", len(rows), rows[0].t.View, rows[0].t.Entity, err)
	}
	return nil
}

// GetTiles implements core.TileStore. A row whose bytes are those of a
// cached tile gets the cached object instead of being decoded again.
func (s *Store) GetTiles(ctx context.Context, view, entity string, dst []*core.Tile) ([]*core.Tile, error) {
	q := s.session.ContextQuery(ctx, s.sel, nil).Bind(view, entity)
	q.Idempotent(true)
	defer q.Release()
	it := q.Iter()
	var sh *tileShard
	if s.cache != nil {
		sh = s.cache.shard(view, entity)
	}
	var resMs, startMs, maxEv int64
	var fs []byte
	// Cache keys outlive the call: they get their own copy of the entity,
	// not the caller's string (which may be part of a whole request's
	// bytes).
	owned := ""
	for it.Scan(&resMs, &startMs, &maxEv, &fs) {
		k := tileKey{view: view, entity: entity, resMs: resMs, startMs: startMs}
		if sh != nil {
			if t := sh.get(k, maxEv, fs); t != nil {
				dst = append(dst, t)
				continue
			}
		}
		dec := &tiles.Tile{View: view, Entity: entity, ResolutionMs: resMs, StartMs: startMs, MaxEventMs: maxEv}
		if err := json.Unmarshal(fs, &dec.Features); err != nil {
			_ = it.Close()
			return dst, fmt.Errorf("decode tile %s: %w", dec.Key(), err)
		}
		for name, ir := range dec.Features {
			if ir == nil {
				_ = it.Close()
				return dst, fmt.Errorf("decode tile %s: feature %s has no state", dec.Key(), name)
			}
		}
		t := s.compact.Tile(dec)
		if sh != nil {
			if owned == "" {
				owned = strings.Clone(entity)
			}
			k.entity = owned
			sh.put(k, maxEv, fs, t, s.cache.maxPerShard)
		}
		dst = append(dst, t)
	}
	if err := it.Close(); err != nil {
		return dst, fmt.Errorf("read tiles of %s %q: %w", view, entity, err)
	}
	return dst, nil
}

// StableTiles implements core.StableTiles: with the tile cache an unchanged
// tile is returned as the same object, and a returned object never changes.
func (s *Store) StableTiles() bool { return s.cache != nil }

// Close closes the session.
func (s *Store) Close() error {
	s.session.Close()
	return nil
}

// slogger sends the driver's log lines to slog at debug level.
type slogger struct{ l *slog.Logger }

func (s slogger) Print(v ...any) { s.l.Debug("gocql", "msg", fmt.Sprint(v...)) }
func (s slogger) Printf(format string, v ...any) {
	s.l.Debug("gocql", "msg", fmt.Sprintf(format, v...))
}
func (s slogger) Println(v ...any) { s.l.Debug("gocql", "msg", fmt.Sprint(v...)) }
