// Package cqlserver is an in-process CQL native-protocol (v4) server that
// stands in for ScyllaDB in tests. It speaks the real wire protocol through
// the DataStax frame codec, so the real driver (gocql) runs against it, and
// it implements the subset of CQL the featureserver uses: CREATE KEYSPACE,
// CREATE TABLE with a compound primary key, INSERT ... USING TTL, SELECT
// with equality on the partition key, ordered by the clustering columns,
// with LIMIT and paging (the page size of the request; the paging state
// continues after the last row's clustering key), prepared statements
// with typed bind markers and batches, plus the system tables a driver
// reads on connect (one node owning one token). Requests on one
// connection are answered in order; connections are served concurrently.
// Anything else gets an error frame, never silence.
package cqlserver

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/datacodec"
	"github.com/datastax/go-cassandra-native-protocol/datatype"
	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// Server is a running CQL server on 127.0.0.1.
type Server struct {
	lis   net.Listener
	codec frame.Codec
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	tables   map[string]*table // "ks.table"
	spaces   map[string]bool
	prepared map[string]*statement
	conns    map[net.Conn]struct{}
	requests map[string]int // statement kind → count, for tests
	// schemaDelay is how long a CREATE statement takes to answer.
	schemaDelay time.Duration
	wg          sync.WaitGroup
	closed      bool
}

// Start listens on a free port of 127.0.0.1.
func Start(log *slog.Logger) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{lis: lis, codec: frame.NewCodec(), log: log, now: time.Now,
		tables: map[string]*table{}, spaces: map[string]bool{}, prepared: map[string]*statement{},
		conns: map[net.Conn]struct{}{}, requests: map[string]int{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// SetSchemaDelay makes CREATE KEYSPACE and CREATE TABLE answer after d, as
// on a real server, where a schema change is agreed by the cluster and
// takes far longer than a read or write (Apache Cassandra: seconds).
func (s *Server) SetSchemaDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schemaDelay = d
}

// SetClock replaces the clock TTLs are counted with.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Requests returns how many requests of a kind ("prepare", "execute",
// "query", "batch") the server answered.
func (s *Server) Requests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[kind]
}

// Close stops accepting, closes every connection and waits for handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.lis.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	var keyspace string
	for {
		f, err := s.codec.DecodeFrame(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("cql decode", "err", err)
				// An unsupported protocol version gets a protocol error
				// the driver can act on (it retries with a lower one).
				var pv *frame.ProtocolVersionErr
				if errors.As(err, &pv) {
					out := frame.NewFrame(primitive.ProtocolVersion4, 0, &message.ProtocolError{ErrorMessage: err.Error()})
					_ = s.codec.EncodeFrame(out, c)
				}
			}
			return
		}
		resp := s.handle(f.Body.Message, &keyspace)
		out := frame.NewFrame(f.Header.Version, f.Header.StreamId, resp)
		if err := s.codec.EncodeFrame(out, c); err != nil {
			s.log.Debug("cql encode", "err", err)
			return
		}
	}
}

func (s *Server) count(kind string) {
	s.mu.Lock()
	s.requests[kind]++
	s.mu.Unlock()
}

func (s *Server) handle(m message.Message, keyspace *string) message.Message {
	switch m := m.(type) {
	case *message.Options:
		return &message.Supported{Options: map[string][]string{"CQL_VERSION": {"3.4.5"}, "COMPRESSION": {}}}
	case *message.Startup:
		return &message.Ready{}
	case *message.Register:
		return &message.Ready{}
	case *message.Query:
		s.count("query")
		st, err := s.parse(m.Query, *keyspace)
		if err != nil {
			return errorMessage(err)
		}
		if st.kind == kindUse {
			*keyspace = st.keyspace
			return &message.SetKeyspaceResult{Keyspace: st.keyspace}
		}
		if st.kind == kindCreateKeyspace || st.kind == kindCreateTable {
			s.mu.Lock()
			d := s.schemaDelay
			s.mu.Unlock()
			time.Sleep(d) // the server's own latency, not the test's synchronisation
		}
		return s.exec(st, options(m.Options))
	case *message.Prepare:
		s.count("prepare")
		ks := *keyspace
		if m.Keyspace != "" {
			ks = m.Keyspace
		}
		st, err := s.parse(m.Query, ks)
		if err != nil {
			return errorMessage(err)
		}
		if st.system {
			return &message.Invalid{ErrorMessage: "system tables cannot be prepared here"}
		}
		id := md5.Sum([]byte(ks + "\x00" + m.Query))
		s.mu.Lock()
		s.prepared[string(id[:])] = st
		s.mu.Unlock()
		return &message.PreparedResult{PreparedQueryId: id[:], VariablesMetadata: st.variables(), ResultMetadata: st.resultMetadata()}
	case *message.Execute:
		s.count("execute")
		s.mu.Lock()
		st := s.prepared[string(m.QueryId)]
		s.mu.Unlock()
		if st == nil {
			return &message.Unprepared{ErrorMessage: "unknown prepared statement", Id: m.QueryId}
		}
		return s.exec(st, options(m.Options))
	case *message.Batch:
		s.count("batch")
		for _, ch := range m.Children {
			var st *statement
			if ch.Id != nil {
				s.mu.Lock()
				st = s.prepared[string(ch.Id)]
				s.mu.Unlock()
				if st == nil {
					return &message.Unprepared{ErrorMessage: "unknown prepared statement", Id: ch.Id}
				}
			} else {
				var err error
				if st, err = s.parse(ch.Query, *keyspace); err != nil {
					return errorMessage(err)
				}
			}
			if st.kind != kindInsert {
				return &message.Invalid{ErrorMessage: "only INSERT is supported in a batch"}
			}
			if r := s.exec(st, &message.QueryOptions{PositionalValues: ch.Values}); isError(r) {
				return r
			}
		}
		return &message.VoidResult{}
	}
	return &message.ProtocolError{ErrorMessage: fmt.Sprintf("unsupported request %T", m)}
}

func options(o *message.QueryOptions) *message.QueryOptions {
	if o == nil {
		return &message.QueryOptions{}
	}
	return o
}

func isError(m message.Message) bool { _, ok := m.(message.Error); return ok }

// cqlError carries an error code to the client.
type cqlError struct {
	invalid bool
	msg     string
}

func (e *cqlError) Error() string { return e.msg }

func syntaxErr(format string, args ...any) error {
	return &cqlError{msg: fmt.Sprintf(format, args...)}
}

func invalidErr(format string, args ...any) error {
	return &cqlError{invalid: true, msg: fmt.Sprintf(format, args...)}
}

func errorMessage(err error) message.Message {
	var ce *cqlError
	if errors.As(err, &ce) && ce.invalid {
		return &message.Invalid{ErrorMessage: ce.msg}
	}
	if errors.As(err, &ce) {
		return &message.SyntaxError{ErrorMessage: ce.msg}
	}
	return &message.ServerError{ErrorMessage: err.Error()}
}

// ---- schema and storage

type column struct {
	name string
	typ  datatype.DataType
}

type table struct {
	ks, name   string
	cols       []column
	colIdx     map[string]int
	pk, ck     []int // column indices
	partitions map[string]*partition
}

type row struct {
	vals    [][]byte
	expires time.Time // zero: never
}

type partition struct {
	rows []*row // sorted by clustering columns
}

func (t *table) partitionKey(vals [][]byte) string {
	var b bytes.Buffer
	for _, i := range t.pk {
		binary.Write(&b, binary.BigEndian, int32(len(vals[i])))
		b.Write(vals[i])
	}
	return b.String()
}

// compareCK orders rows by clustering columns, typed.
func (t *table) compareCK(a, b [][]byte) int {
	for _, i := range t.ck {
		if c := compareValue(t.cols[i].typ, a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareValue(typ datatype.DataType, a, b []byte) int {
	switch typ.Code() {
	case primitive.DataTypeCodeBigint, primitive.DataTypeCodeInt, primitive.DataTypeCodeTimestamp, primitive.DataTypeCodeCounter:
		if len(a) == len(b) && (len(a) == 8 || len(a) == 4) {
			var x, y int64
			if len(a) == 8 {
				x, y = int64(binary.BigEndian.Uint64(a)), int64(binary.BigEndian.Uint64(b))
			} else {
				x, y = int64(int32(binary.BigEndian.Uint32(a))), int64(int32(binary.BigEndian.Uint32(b)))
			}
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	return bytes.Compare(a, b)
}

// ---- statements

type kind int

const (
	kindUse kind = iota
	kindCreateKeyspace
	kindCreateTable
	kindInsert
	kindSelect
	kindSystemSelect
)

type statement struct {
	kind     kind
	system   bool
	keyspace string
	table    string
	// create table
	def *table
	// insert: value sources per column (bind index or literal)
	cols   []string
	binds  []bind
	ttl    bind
	hasTTL bool
	where  []cond
	sel    []string
	limit  int
	nbinds int
}

// bind is a value from a bind marker (idx ≥ 0) or a literal.
type bind struct {
	idx int
	lit []byte
}

type cond struct {
	col string
	val bind
}

var (
	reSpace       = regexp.MustCompile(`\s+`)
	reUse         = regexp.MustCompile(`(?i)^USE\s+"?(\w+)"?$`)
	reCreateKS    = regexp.MustCompile(`(?i)^CREATE\s+KEYSPACE\s+(IF\s+NOT\s+EXISTS\s+)?"?(\w+)"?\s+WITH\s+.+$`)
	reCreateTable = regexp.MustCompile(`(?i)^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([\w.]+)\s*\(`)
	reInsert      = regexp.MustCompile(`(?i)^INSERT\s+INTO\s+([\w.]+)\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)(?:\s+USING\s+TTL\s+(\?|\d+))?$`)
	reSelect      = regexp.MustCompile(`(?i)^SELECT\s+(.+?)\s+FROM\s+([\w.]+)(?:\s+WHERE\s+(.+?))?(?:\s+LIMIT\s+(\d+))?(?:\s+ALLOW\s+FILTERING)?$`)
	reCond        = regexp.MustCompile(`(?i)^(\w+)\s*=\s*(.+)$`)
)

func qualify(name, ks string) (string, string, error) {
	if k, t, ok := strings.Cut(name, "."); ok {
		return strings.ToLower(k), strings.ToLower(t), nil
	}
	if ks == "" {
		return "", "", invalidErr("no keyspace has been specified for table %s", name)
	}
	return ks, strings.ToLower(name), nil
}

func (s *Server) parse(q, ks string) (*statement, error) {
	q = strings.TrimSpace(reSpace.ReplaceAllString(q, " "))
	q = strings.TrimSuffix(q, ";")
	switch {
	case reUse.MatchString(q):
		return &statement{kind: kindUse, keyspace: strings.ToLower(reUse.FindStringSubmatch(q)[1])}, nil
	case reCreateKS.MatchString(q):
		return &statement{kind: kindCreateKeyspace, keyspace: strings.ToLower(reCreateKS.FindStringSubmatch(q)[2])}, nil
	case reCreateTable.MatchString(q):
		return parseCreateTable(q, ks)
	case reInsert.MatchString(q):
		return s.parseInsert(q, ks)
	case reSelect.MatchString(q):
		return s.parseSelect(q, ks)
	}
	return nil, syntaxErr("unsupported statement: %s", q)
}

var types = map[string]datatype.DataType{
	"text": datatype.Varchar, "varchar": datatype.Varchar, "ascii": datatype.Ascii, "bigint": datatype.Bigint,
	"int": datatype.Int, "blob": datatype.Blob, "boolean": datatype.Boolean, "double": datatype.Double,
	"timestamp": datatype.Timestamp, "uuid": datatype.Uuid, "inet": datatype.Inet,
}

// splitTop splits s at commas outside parentheses.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(', '<':
			depth++
		case ')', '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

// reserved are the reserved words of CQL (Apache Cassandra 5.0's
// cql3/reserved_keywords.txt): a real server refuses them as unquoted
// column names, so this one does too.
var reserved = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`ADD ALLOW ALTER AND APPLY ASC AUTHORIZE BATCH BEGIN BY COLUMNFAMILY CREATE
		DELETE DESC DESCRIBE DROP ENTRIES EXECUTE FROM FULL GRANT IF IN INDEX INFINITY INSERT INTO IS
		KEYSPACE LIMIT MATERIALIZED MODIFY NAN NORECURSIVE NOT NULL OF ON OR ORDER PRIMARY RENAME
		REVOKE SCHEMA SELECT SET TABLE TO TOKEN TRUNCATE UNLOGGED UPDATE USE USING VIEW WHERE WITH`) {
		m[w] = true
	}
	return m
}()

func parseCreateTable(q, ks string) (*statement, error) {
	m := reCreateTable.FindStringSubmatchIndex(q)
	name := q[m[4]:m[5]]
	open := m[1] - 1
	depth, end := 0, -1
	for i := open; i < len(q); i++ {
		if q[i] == '(' {
			depth++
		} else if q[i] == ')' {
			depth--
			if depth == 0 {
				end = i
				break
			}
		}
	}
	if end < 0 {
		return nil, syntaxErr("unbalanced parentheses in CREATE TABLE")
	}
	k, tname, err := qualify(name, ks)
	if err != nil {
		return nil, err
	}
	t := &table{ks: k, name: tname, colIdx: map[string]int{}, partitions: map[string]*partition{}}
	var pkDef string
	for _, part := range splitTop(q[open+1 : end]) {
		if strings.HasPrefix(strings.ToUpper(part), "PRIMARY KEY") {
			pkDef = strings.TrimSpace(part[len("PRIMARY KEY"):])
			continue
		}
		f := strings.Fields(part)
		if len(f) < 2 {
			return nil, syntaxErr("bad column definition %q", part)
		}
		if reserved[strings.ToUpper(f[0])] {
			return nil, syntaxErr("no viable alternative at input '%s': %s is a reserved word of CQL (quote it or pick another name)", f[0], strings.ToUpper(f[0]))
		}
		typ, ok := types[strings.ToLower(f[1])]
		if !ok {
			return nil, invalidErr("unsupported type %q of column %s", f[1], f[0])
		}
		t.colIdx[strings.ToLower(f[0])] = len(t.cols)
		t.cols = append(t.cols, column{name: strings.ToLower(f[0]), typ: typ})
		if len(f) >= 4 && strings.EqualFold(f[2], "PRIMARY") {
			pkDef = "(" + f[0] + ")"
		}
	}
	if !strings.HasPrefix(pkDef, "(") || !strings.HasSuffix(pkDef, ")") {
		return nil, syntaxErr("missing PRIMARY KEY")
	}
	keys := splitTop(pkDef[1 : len(pkDef)-1])
	if len(keys) == 0 {
		return nil, syntaxErr("empty PRIMARY KEY")
	}
	var pk []string
	if strings.HasPrefix(keys[0], "(") {
		pk = splitTop(strings.Trim(keys[0], "()"))
	} else {
		pk = []string{keys[0]}
	}
	for _, c := range pk {
		i, ok := t.colIdx[strings.ToLower(c)]
		if !ok {
			return nil, invalidErr("unknown partition key column %s", c)
		}
		t.pk = append(t.pk, i)
	}
	for _, c := range keys[1:] {
		i, ok := t.colIdx[strings.ToLower(c)]
		if !ok {
			return nil, invalidErr("unknown clustering column %s", c)
		}
		t.ck = append(t.ck, i)
	}
	return &statement{kind: kindCreateTable, keyspace: k, table: tname, def: t}, nil
}

func (s *Server) lookup(name, ks string) (*table, error) {
	k, t, err := qualify(name, ks)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tb := s.tables[k+"."+t]
	if tb == nil {
		return nil, invalidErr("unconfigured table %s.%s", k, t)
	}
	return tb, nil
}

// value parses a bind marker or a literal of typ.
func value(tok string, typ datatype.DataType, next *int) (bind, error) {
	tok = strings.TrimSpace(tok)
	if tok == "?" {
		b := bind{idx: *next}
		*next++
		return b, nil
	}
	if strings.HasPrefix(tok, "'") && strings.HasSuffix(tok, "'") && len(tok) >= 2 {
		return bind{idx: -1, lit: []byte(strings.ReplaceAll(tok[1:len(tok)-1], "''", "'"))}, nil
	}
	if typ != nil && (typ.Code() == primitive.DataTypeCodeBigint || typ.Code() == primitive.DataTypeCodeInt) {
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return bind{}, syntaxErr("bad number %q", tok)
		}
		if typ.Code() == primitive.DataTypeCodeInt {
			return bind{idx: -1, lit: binary.BigEndian.AppendUint32(nil, uint32(n))}, nil
		}
		return bind{idx: -1, lit: binary.BigEndian.AppendUint64(nil, uint64(n))}, nil
	}
	return bind{}, syntaxErr("unsupported literal %q", tok)
}

func (s *Server) parseInsert(q, ks string) (*statement, error) {
	m := reInsert.FindStringSubmatch(q)
	t, err := s.lookup(m[1], ks)
	if err != nil {
		return nil, err
	}
	st := &statement{kind: kindInsert, keyspace: t.ks, table: t.name, def: t}
	cols := splitTop(m[2])
	vals := splitTop(m[3])
	if len(cols) != len(vals) {
		return nil, invalidErr("%d columns but %d values", len(cols), len(vals))
	}
	next := 0
	for i, c := range cols {
		c = strings.ToLower(c)
		ci, ok := t.colIdx[c]
		if !ok {
			return nil, invalidErr("undefined column name %s", c)
		}
		b, err := value(vals[i], t.cols[ci].typ, &next)
		if err != nil {
			return nil, err
		}
		st.cols = append(st.cols, c)
		st.binds = append(st.binds, b)
	}
	for _, pk := range append(append([]int(nil), t.pk...), t.ck...) {
		found := false
		for _, c := range st.cols {
			found = found || c == t.cols[pk].name
		}
		if !found {
			return nil, invalidErr("some primary key parts are missing: %s", t.cols[pk].name)
		}
	}
	if m[4] != "" {
		st.hasTTL = true
		if st.ttl, err = value(m[4], datatype.Int, &next); err != nil {
			return nil, err
		}
	}
	st.nbinds = next
	return st, nil
}

func (s *Server) parseSelect(q, ks string) (*statement, error) {
	m := reSelect.FindStringSubmatch(q)
	k, tname, err := qualify(m[2], ks)
	if err != nil {
		return nil, err
	}
	st := &statement{kind: kindSelect, keyspace: k, table: tname}
	for _, c := range splitTop(m[1]) {
		st.sel = append(st.sel, strings.ToLower(strings.Trim(c, `"`)))
	}
	if m[4] != "" {
		st.limit, _ = strconv.Atoi(m[4])
	}
	if k == "system" || k == "system_schema" {
		st.kind, st.system = kindSystemSelect, true
		return st, nil
	}
	t, err := s.lookup(m[2], ks)
	if err != nil {
		return nil, err
	}
	st.def = t
	if len(st.sel) == 1 && st.sel[0] == "*" {
		st.sel = st.sel[:0]
		for _, c := range t.cols {
			st.sel = append(st.sel, c.name)
		}
	}
	for _, c := range st.sel {
		if _, ok := t.colIdx[c]; !ok {
			return nil, invalidErr("undefined column name %s", c)
		}
	}
	next := 0
	if m[3] != "" {
		for _, part := range regexp.MustCompile(`(?i)\s+AND\s+`).Split(m[3], -1) {
			cm := reCond.FindStringSubmatch(strings.TrimSpace(part))
			if cm == nil {
				return nil, invalidErr("only equality restrictions are supported: %s", part)
			}
			c := strings.ToLower(cm[1])
			ci, ok := t.colIdx[c]
			if !ok {
				return nil, invalidErr("undefined column name %s", c)
			}
			b, err := value(cm[2], t.cols[ci].typ, &next)
			if err != nil {
				return nil, err
			}
			st.where = append(st.where, cond{col: c, val: b})
		}
	}
	for _, pk := range t.pk {
		found := false
		for _, w := range st.where {
			found = found || w.col == t.cols[pk].name
		}
		if !found {
			return nil, invalidErr("partition key column %s must be restricted", t.cols[pk].name)
		}
	}
	st.nbinds = next
	return st, nil
}

// variables describes the bind markers of a prepared statement.
func (st *statement) variables() *message.VariablesMetadata {
	vm := &message.VariablesMetadata{}
	cols := make([]*message.ColumnMetadata, st.nbinds)
	add := func(b bind, name string, typ datatype.DataType) {
		if b.idx >= 0 && b.idx < len(cols) {
			cols[b.idx] = &message.ColumnMetadata{Keyspace: st.keyspace, Table: st.table, Name: name, Index: int32(b.idx), Type: typ}
		}
	}
	switch st.kind {
	case kindInsert:
		for i, c := range st.cols {
			add(st.binds[i], c, st.def.cols[st.def.colIdx[c]].typ)
		}
		if st.hasTTL {
			add(st.ttl, "[ttl]", datatype.Int)
		}
		for _, pk := range st.def.pk {
			for i, c := range st.cols {
				if c == st.def.cols[pk].name && st.binds[i].idx >= 0 {
					vm.PkIndices = append(vm.PkIndices, uint16(st.binds[i].idx))
				}
			}
		}
	case kindSelect:
		for _, w := range st.where {
			add(w.val, w.col, st.def.cols[st.def.colIdx[w.col]].typ)
		}
		for _, pk := range st.def.pk {
			for _, w := range st.where {
				if w.col == st.def.cols[pk].name && w.val.idx >= 0 {
					vm.PkIndices = append(vm.PkIndices, uint16(w.val.idx))
				}
			}
		}
	}
	for _, c := range cols {
		if c == nil {
			return &message.VariablesMetadata{}
		}
	}
	vm.Columns = cols
	return vm
}

func (st *statement) resultMetadata() *message.RowsMetadata {
	if st.kind != kindSelect {
		return nil
	}
	rm := &message.RowsMetadata{ColumnCount: int32(len(st.sel))}
	for i, c := range st.sel {
		rm.Columns = append(rm.Columns, &message.ColumnMetadata{Keyspace: st.keyspace, Table: st.table, Name: c, Index: int32(i), Type: st.def.cols[st.def.colIdx[c]].typ})
	}
	return rm
}

func (b bind) get(vals []*primitive.Value) ([]byte, error) {
	if b.idx < 0 {
		return b.lit, nil
	}
	if b.idx >= len(vals) || vals[b.idx] == nil {
		return nil, invalidErr("there are %d bind variables, %d values were given", b.idx+1, len(vals))
	}
	if vals[b.idx].Type != primitive.ValueTypeRegular {
		return nil, nil
	}
	return vals[b.idx].Contents, nil
}

func (s *Server) exec(st *statement, o *message.QueryOptions) message.Message {
	switch st.kind {
	case kindCreateKeyspace:
		s.mu.Lock()
		s.spaces[st.keyspace] = true
		s.mu.Unlock()
		return &message.SchemaChangeResult{ChangeType: primitive.SchemaChangeTypeCreated, Target: primitive.SchemaChangeTargetKeyspace, Keyspace: st.keyspace}
	case kindCreateTable:
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.spaces[st.keyspace] {
			return &message.Invalid{ErrorMessage: "keyspace " + st.keyspace + " does not exist"}
		}
		if s.tables[st.keyspace+"."+st.table] == nil {
			s.tables[st.keyspace+"."+st.table] = st.def
		}
		return &message.SchemaChangeResult{ChangeType: primitive.SchemaChangeTypeCreated, Target: primitive.SchemaChangeTargetTable, Keyspace: st.keyspace, Object: st.table}
	case kindSystemSelect:
		return s.system(st)
	}
	// Statements parsed before a table existed resolve it now.
	t, err := s.lookup(st.keyspace+"."+st.table, "")
	if err != nil {
		return errorMessage(err)
	}
	if st.def == nil {
		cp := *st
		cp.def = t
		st = &cp
	}
	switch st.kind {
	case kindInsert:
		return s.insert(t, st, o.PositionalValues)
	case kindSelect:
		return s.selectRows(t, st, o)
	}
	return &message.ServerError{ErrorMessage: "unexpected statement"}
}

func (s *Server) insert(t *table, st *statement, vals []*primitive.Value) message.Message {
	r := &row{vals: make([][]byte, len(t.cols))}
	for i, c := range st.cols {
		v, err := st.binds[i].get(vals)
		if err != nil {
			return errorMessage(err)
		}
		r.vals[t.colIdx[c]] = append([]byte(nil), v...)
	}
	for _, k := range append(append([]int(nil), t.pk...), t.ck...) {
		if r.vals[k] == nil {
			return &message.Invalid{ErrorMessage: "invalid null value for primary key part " + t.cols[k].name}
		}
	}
	if st.hasTTL {
		v, err := st.ttl.get(vals)
		if err != nil {
			return errorMessage(err)
		}
		if len(v) != 4 {
			return &message.Invalid{ErrorMessage: fmt.Sprintf("TTL must be a 4-byte int, got %d bytes", len(v))}
		}
		ttl := int32(binary.BigEndian.Uint32(v))
		if ttl < 0 {
			return &message.Invalid{ErrorMessage: fmt.Sprintf("a TTL must be greater or equal to 0, but was %d", ttl)}
		}
		if ttl > 0 {
			r.expires = s.clock().Add(time.Duration(ttl) * time.Second)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := t.partitionKey(r.vals)
	p := t.partitions[key]
	if p == nil {
		p = &partition{}
		t.partitions[key] = p
	}
	i := sort.Search(len(p.rows), func(i int) bool { return t.compareCK(p.rows[i].vals, r.vals) >= 0 })
	if i < len(p.rows) && t.compareCK(p.rows[i].vals, r.vals) == 0 {
		p.rows[i] = r // an INSERT is an upsert
	} else {
		p.rows = append(p.rows, nil)
		copy(p.rows[i+1:], p.rows[i:])
		p.rows[i] = r
	}
	return &message.VoidResult{}
}

func (s *Server) selectRows(t *table, st *statement, o *message.QueryOptions) message.Message {
	want := make([][]byte, len(t.cols))
	for _, w := range st.where {
		v, err := w.val.get(o.PositionalValues)
		if err != nil {
			return errorMessage(err)
		}
		want[t.colIdx[w.col]] = v
	}
	// A later page continues after the last row of the one before, by
	// clustering key (rows written in between are seen when they sort
	// after it), and counts what it returned against LIMIT.
	var after [][]byte
	returned := 0
	if len(o.PagingState) > 0 {
		var err error
		if returned, after, err = t.decodePagingState(o.PagingState); err != nil {
			return &message.ProtocolError{ErrorMessage: "invalid value for the paging state: " + err.Error()}
		}
	}
	now := s.clock()
	var data message.RowSet
	var last *row
	more := false
	s.mu.Lock()
	if p := t.partitions[t.partitionKey(want)]; p != nil {
	rows:
		for _, r := range p.rows {
			if !r.expires.IsZero() && !now.Before(r.expires) {
				continue
			}
			for _, w := range st.where {
				if !bytes.Equal(r.vals[t.colIdx[w.col]], want[t.colIdx[w.col]]) {
					continue rows
				}
			}
			if after != nil && t.compareCK(r.vals, after) <= 0 {
				continue
			}
			if st.limit > 0 && returned+len(data) >= st.limit {
				break
			}
			if o.PageSize > 0 && len(data) == int(o.PageSize) {
				more = true
				break
			}
			out := make(message.Row, len(st.sel))
			for i, c := range st.sel {
				out[i] = r.vals[t.colIdx[c]]
			}
			data = append(data, out)
			last = r
		}
	}
	s.mu.Unlock()
	md := st.resultMetadata()
	if o.SkipMetadata {
		md = &message.RowsMetadata{ColumnCount: int32(len(st.sel))}
	}
	if more {
		md.PagingState = t.encodePagingState(returned+len(data), last.vals)
	}
	return &message.RowsResult{Metadata: md, Data: data}
}

// encodePagingState writes the rows returned so far and the clustering
// key of the last one.
func (t *table) encodePagingState(returned int, vals [][]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(returned))
	for _, i := range t.ck {
		b = binary.BigEndian.AppendUint32(b, uint32(len(vals[i])))
		b = append(b, vals[i]...)
	}
	return b
}

// decodePagingState reads what encodePagingState wrote.
func (t *table) decodePagingState(b []byte) (int, [][]byte, error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%d bytes", len(b))
	}
	returned := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	vals := make([][]byte, len(t.cols))
	for _, i := range t.ck {
		if len(b) < 4 {
			return 0, nil, errors.New("truncated clustering key")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-4 {
			return 0, nil, errors.New("truncated clustering key")
		}
		vals[i] = b[4 : 4+n]
		b = b[4+n:]
	}
	if len(b) != 0 {
		return 0, nil, fmt.Errorf("%d bytes after the clustering key", len(b))
	}
	return returned, vals, nil
}

// ---- system tables

var localColumns = map[string]datatype.DataType{
	"key": datatype.Varchar, "bootstrapped": datatype.Varchar, "broadcast_address": datatype.Inet,
	"cluster_name": datatype.Varchar, "cql_version": datatype.Varchar, "data_center": datatype.Varchar,
	"gossip_generation": datatype.Int, "host_id": datatype.Uuid, "listen_address": datatype.Inet,
	"native_protocol_version": datatype.Varchar, "partitioner": datatype.Varchar, "rack": datatype.Varchar,
	"release_version": datatype.Varchar, "rpc_address": datatype.Inet, "schema_version": datatype.Uuid,
	"tokens": datatype.NewSet(datatype.Varchar), "thrift_version": datatype.Varchar,
	"broadcast_port": datatype.Int, "listen_port": datatype.Int, "rpc_port": datatype.Int,
}

func (s *Server) localValue(col string) []byte {
	v4 := primitive.ProtocolVersion4
	str := func(x string) []byte { b, _ := datacodec.Varchar.Encode(x, v4); return b }
	host := net.ParseIP("127.0.0.1").To4()
	switch col {
	case "key":
		return str("local")
	case "bootstrapped":
		return str("COMPLETED")
	case "broadcast_address", "listen_address", "rpc_address":
		return host
	case "cluster_name":
		return str("tributary-test")
	case "cql_version":
		return str("3.4.5")
	case "data_center":
		return str("datacenter1")
	case "rack":
		return str("rack1")
	case "host_id":
		return []byte{0x7b, 0x1a, 0x6c, 0x0e, 0x5d, 0x4f, 0x4e, 0x3a, 0x9b, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}
	case "schema_version":
		return []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}
	case "native_protocol_version":
		return str("4")
	case "partitioner":
		return str("org.apache.cassandra.dht.Murmur3Partitioner")
	case "release_version":
		return str("3.0.8")
	case "tokens":
		c, _ := datacodec.NewSet(datatype.NewSet(datatype.Varchar))
		b, _ := c.Encode([]string{"0"}, v4)
		return b
	case "gossip_generation":
		return binary.BigEndian.AppendUint32(nil, 1)
	case "broadcast_port", "listen_port", "rpc_port":
		return binary.BigEndian.AppendUint32(nil, 9042)
	}
	return nil
}

// system answers reads of the system tables: system.local is this one
// node, every other system table is empty.
func (s *Server) system(st *statement) message.Message {
	sel := st.sel
	if len(sel) == 1 && sel[0] == "*" {
		sel = nil
		if st.table == "local" {
			for c := range localColumns {
				sel = append(sel, c)
			}
			sort.Strings(sel)
		}
	}
	md := &message.RowsMetadata{ColumnCount: int32(len(sel))}
	for i, c := range sel {
		typ := localColumns[c]
		if typ == nil {
			typ = datatype.Varchar
		}
		md.Columns = append(md.Columns, &message.ColumnMetadata{Keyspace: st.keyspace, Table: st.table, Name: c, Index: int32(i), Type: typ})
	}
	res := &message.RowsResult{Metadata: md}
	if st.keyspace == "system" && st.table == "local" {
		r := make(message.Row, len(sel))
		for i, c := range sel {
			r[i] = s.localValue(c)
		}
		res.Data = message.RowSet{r}
	}
	return res
}
