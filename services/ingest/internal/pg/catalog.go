// Package pg is ingest's PostgreSQL adapter: server checks, publication and
// slot management, the snapshot read in the slot's exported snapshot, and
// the logical replication stream (pgoutput) decoded into core changes.
package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// sessionParams make the server render values the way core.Mapper reads them.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "iso_8601",
	"TimeZone":           "UTC",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
	"application_name":   "tributary-ingest",
}

// ConnConfig parses dsn and sets the session parameters the value mapping
// relies on; replication opens a logical replication connection.
func ConnConfig(dsn string, replication bool) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres-dsn: %w", err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	if replication {
		cfg.RuntimeParams["replication"] = "database"
	}
	return cfg, nil
}

// Connect opens a connection with ConnConfig.
func Connect(ctx context.Context, dsn string, replication bool) (*pgconn.PgConn, error) {
	cfg, err := ConnConfig(dsn, replication)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		kind := "connect to postgres"
		if replication {
			kind = "open replication connection to postgres"
		}
		return nil, fmt.Errorf("%s %s:%d: %w", kind, cfg.Host, cfg.Port, err)
	}
	return conn, nil
}

// query runs sql with text parameters and returns the rows as strings (NULL as "").
func query(ctx context.Context, conn *pgconn.PgConn, sql string, args ...string) ([][]string, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	out := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = string(v)
		}
	}
	return out, nil
}

// Server describes the connected server and role.
type Server struct {
	Database string
	User     string
	Version  int
}

// CheckServer verifies that the server can do logical replication for this
// role, and says how to fix it when not.
func CheckServer(ctx context.Context, conn *pgconn.PgConn) (Server, error) {
	rows, err := query(ctx, conn, `SELECT current_setting('wal_level'), (r.rolreplication OR r.rolsuper)::text,
		current_user, current_database(), current_setting('server_version_num')
		FROM pg_roles r WHERE r.rolname = current_user`)
	if err != nil {
		return Server{}, fmt.Errorf("check server: %w", err)
	}
	if len(rows) != 1 {
		return Server{}, errors.New("check server: current role not found in pg_roles")
	}
	r := rows[0]
	s := Server{User: r[2], Database: r[3]}
	s.Version, _ = strconv.Atoi(r[4])
	if r[0] != "logical" {
		return s, fmt.Errorf("postgres: wal_level is %q but logical replication needs wal_level = logical "+
			"(ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)", r[0])
	}
	if r[1] != "true" {
		return s, fmt.Errorf("postgres: role %q lacks the REPLICATION privilege (ALTER ROLE %s WITH REPLICATION)",
			s.User, quoteIdent(s.User))
	}
	if s.Version < 100000 {
		return s, fmt.Errorf("postgres: server version %d has no pgoutput; PostgreSQL 10 or later is needed", s.Version)
	}
	return s, nil
}

// TableName is a schema-qualified table name.
type TableName struct{ Schema, Name string }

func (t TableName) String() string { return t.Schema + "." + t.Name }

// Quoted is the table name as SQL.
func (t TableName) Quoted() string { return quoteIdent(t.Schema) + "." + quoteIdent(t.Name) }

// ParseTables parses a comma-separated schema.table list.
func ParseTables(list []string) ([]TableName, error) {
	var out []TableName
	seen := map[TableName]bool{}
	for _, s := range list {
		schema, name, ok := strings.Cut(s, ".")
		if !ok || schema == "" || name == "" || strings.Contains(name, ".") {
			return nil, fmt.Errorf("tables: %q is not schema.table", s)
		}
		t := TableName{schema, name}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("tables: name at least one schema.table")
	}
	return out, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// TableInfo is what the catalog says about a captured table.
type TableInfo struct {
	Name TableName
	OID  uint32
	// Key is the primary key, or every column when keyed by all columns.
	Key []string
	// ReplicaIdentity is d (default), f (full), i (index) or n (nothing).
	ReplicaIdentity string
}

// KeyPolicy says what to do with tables without a primary key.
type KeyPolicy struct {
	// AllColumns keys such tables by all their columns (they must have
	// REPLICA IDENTITY FULL so deletes carry the old row).
	AllColumns bool
}

// LookupTable reads a table's key and replica identity from the catalog.
func LookupTable(ctx context.Context, conn *pgconn.PgConn, t TableName, policy KeyPolicy) (TableInfo, error) {
	rows, err := query(ctx, conn, `SELECT c.oid::text, c.relreplident::text,
		coalesce((SELECT json_agg(a.attname ORDER BY k.ord) FROM pg_index i
			CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = c.oid AND i.indisprimary), '[]')::text,
		(SELECT coalesce(json_agg(a.attname ORDER BY a.attnum), '[]') FROM pg_attribute a
			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, t.Schema, t.Name)
	if err != nil {
		return TableInfo{}, fmt.Errorf("look up table %s: %w", t, err)
	}
	if len(rows) == 0 {
		return TableInfo{}, fmt.Errorf("tables: table %s does not exist", t)
	}
	oid, _ := strconv.ParseUint(rows[0][0], 10, 32)
	info := TableInfo{Name: t, OID: uint32(oid), ReplicaIdentity: rows[0][1]}
	if err := json.Unmarshal([]byte(rows[0][2]), &info.Key); err != nil {
		return TableInfo{}, fmt.Errorf("look up table %s: primary key: %w", t, err)
	}
	if len(info.Key) == 0 {
		if !policy.AllColumns {
			return TableInfo{}, fmt.Errorf("tables: table %s has no primary key: add one, or run with --key-all-columns "+
				"after ALTER TABLE %s REPLICA IDENTITY FULL", t, t.Quoted())
		}
		if info.ReplicaIdentity != "f" {
			return TableInfo{}, fmt.Errorf("tables: table %s has no primary key and is keyed by all columns, "+
				"which needs ALTER TABLE %s REPLICA IDENTITY FULL", t, t.Quoted())
		}
		if err := json.Unmarshal([]byte(rows[0][3]), &info.Key); err != nil {
			return TableInfo{}, fmt.Errorf("look up table %s: columns: %w", t, err)
		}
	}
	return info, nil
}

// ResolveTypes adds the catalog's description of every OID types does not know yet.
func ResolveTypes(ctx context.Context, conn *pgconn.PgConn, types *core.Types, oids []uint32) error {
	var missing []string
	for _, o := range oids {
		if !types.Known(o) {
			missing = append(missing, strconv.FormatUint(uint64(o), 10))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := query(ctx, conn, `SELECT t.oid::text, t.typelem::text, t.typbasetype::text, t.typdelim::text, t.typcategory::text
		FROM pg_type t WHERE t.oid = ANY(string_to_array($1, ',')::oid[])`, strings.Join(missing, ","))
	if err != nil {
		return fmt.Errorf("look up types %v: %w", missing, err)
	}
	for _, r := range rows {
		oid, _ := strconv.ParseUint(r[0], 10, 32)
		elem, _ := strconv.ParseUint(r[1], 10, 32)
		base, _ := strconv.ParseUint(r[2], 10, 32)
		info := core.TypeInfo{Base: uint32(base), Delim: ','}
		if r[4] == "A" {
			info.Elem = uint32(elem)
		}
		if len(r[3]) == 1 {
			info.Delim = r[3][0]
		}
		types.Add(uint32(oid), info)
		if info.Elem != 0 || info.Base != 0 {
			if err := ResolveTypes(ctx, conn, types, []uint32{info.Elem, info.Base}); err != nil {
				return err
			}
		}
	}
	// Remember types the catalog does not have, so they are not asked for again.
	for _, m := range missing {
		o, _ := strconv.ParseUint(m, 10, 32)
		if !types.Known(uint32(o)) {
			types.Add(uint32(o), core.TypeInfo{})
		}
	}
	return nil
}

// EnsurePublication creates the publication for tables when missing, and
// adds tables an existing publication lacks.
func EnsurePublication(ctx context.Context, conn *pgconn.PgConn, name string, tables []TableName) error {
	rows, err := query(ctx, conn, `SELECT puballtables::text FROM pg_publication WHERE pubname = $1`, name)
	if err != nil {
		return fmt.Errorf("look up publication %s: %w", name, err)
	}
	quoted := make([]string, len(tables))
	for i, t := range tables {
		quoted[i] = t.Quoted()
	}
	if len(rows) == 0 {
		sql := "CREATE PUBLICATION " + quoteIdent(name) + " FOR TABLE " + strings.Join(quoted, ", ")
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("create publication %s: %w", name, err)
		}
		return nil
	}
	if rows[0][0] == "true" {
		return nil
	}
	have, err := query(ctx, conn, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, name)
	if err != nil {
		return fmt.Errorf("look up publication %s tables: %w", name, err)
	}
	in := map[TableName]bool{}
	for _, r := range have {
		in[TableName{r[0], r[1]}] = true
	}
	var add []string
	for i, t := range tables {
		if !in[t] {
			add = append(add, quoted[i])
		}
	}
	if len(add) == 0 {
		return nil
	}
	sql := "ALTER PUBLICATION " + quoteIdent(name) + " ADD TABLE " + strings.Join(add, ", ")
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("publication %s lacks %s and adding them failed (the publication's owner can run %q): %w",
			name, strings.Join(add, ", "), sql, err)
	}
	return nil
}

// SlotInfo describes an existing replication slot.
type SlotInfo struct {
	Plugin         string
	Database       string
	ConfirmedFlush uint64
	ActivePID      string
}

// LookupSlot returns the slot, or false when it does not exist.
func LookupSlot(ctx context.Context, conn *pgconn.PgConn, name string) (SlotInfo, bool, error) {
	rows, err := query(ctx, conn, `SELECT coalesce(plugin, ''), coalesce(database::text, ''),
		coalesce(confirmed_flush_lsn::text, '0/0'), coalesce(active_pid::text, '')
		FROM pg_replication_slots WHERE slot_name = $1`, name)
	if err != nil {
		return SlotInfo{}, false, fmt.Errorf("look up slot %s: %w", name, err)
	}
	if len(rows) == 0 {
		return SlotInfo{}, false, nil
	}
	r := rows[0]
	lsn, err := parseLSN(r[2])
	if err != nil {
		return SlotInfo{}, false, fmt.Errorf("slot %s: %w", name, err)
	}
	return SlotInfo{Plugin: r[0], Database: r[1], ConfirmedFlush: lsn, ActivePID: r[3]}, true, nil
}

func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("lsn %q: want X/Y", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("lsn %q: want hex X/Y", s)
	}
	return h<<32 | l, nil
}

// FormatLSN renders an LSN as PostgreSQL does.
func FormatLSN(l uint64) string { return fmt.Sprintf("%X/%X", l>>32, uint32(l)) }
