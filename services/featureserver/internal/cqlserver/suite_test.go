package cqlserver_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
	"github.com/gocql/gocql"

	"github.com/tributary-ml/tributary/services/featureserver/internal/cqlserver"
)

// rawConn speaks the native protocol (v4) frame by frame, to see exactly
// what the server answers.
type rawConn struct {
	t      *testing.T
	c      net.Conn
	codec  frame.Codec
	stream int16
}

func dialRaw(t *testing.T, srv *cqlserver.Server) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawConn{t: t, c: c, codec: frame.NewCodec()}
	if _, ok := r.do(&message.Startup{Options: map[string]string{"CQL_VERSION": "3.0.0"}}).(*message.Ready); !ok {
		t.Fatal("STARTUP not answered with READY")
	}
	return r
}

// do sends one request and returns the response on the same stream.
func (r *rawConn) do(m message.Message) message.Message {
	r.t.Helper()
	r.stream++
	if err := r.c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		r.t.Fatal(err)
	}
	if err := r.codec.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion4, r.stream, m), r.c); err != nil {
		r.t.Fatalf("send %T: %v", m, err)
	}
	f, err := r.codec.DecodeFrame(r.c)
	if err != nil {
		r.t.Fatalf("no answer to %T: %v", m, err)
	}
	if f.Header.StreamId != r.stream {
		r.t.Fatalf("answer to %T on stream %d, want %d", m, f.Header.StreamId, r.stream)
	}
	return f.Body.Message
}

func startServer(t *testing.T) *cqlserver.Server {
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

func schema(t *testing.T, r *rawConn) {
	t.Helper()
	for _, q := range []string{
		"CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TABLE ks.t (p text, q bigint, c bigint, v blob, PRIMARY KEY ((p, q), c))",
	} {
		if res := r.do(&message.Query{Query: q, Options: &message.QueryOptions{}}); isErr(res) {
			t.Fatalf("%s: %v", q, res)
		}
	}
}

func isErr(m message.Message) bool { _, ok := m.(message.Error); return ok }

func int64Value(v int64) *primitive.Value {
	return primitive.NewValue(binary.BigEndian.AppendUint64(nil, uint64(v)))
}

func int32Value(v int32) *primitive.Value {
	return primitive.NewValue(binary.BigEndian.AppendUint32(nil, uint32(v)))
}

type column struct{ name, typ string }

func columns(cols []*message.ColumnMetadata) []column {
	var out []column
	for _, c := range cols {
		out = append(out, column{c.Name, c.Type.AsCql()})
	}
	return out
}

// TestPreparedStatementsHaveTypedBindMarkers: PREPARE describes every bind
// marker with its column's type (the driver encodes values from them),
// `USING TTL ?` as an int named [ttl], the partition key's markers as
// pk indices, and a SELECT's result columns; EXECUTE runs the statement
// with values encoded that way; an unknown id is UNPREPARED.
func TestPreparedStatementsHaveTypedBindMarkers(t *testing.T) {
	r := dialRaw(t, startServer(t))
	schema(t, r)

	ins, ok := r.do(&message.Prepare{Query: "INSERT INTO ks.t (c, p, v, q) VALUES (?, ?, ?, ?) USING TTL ?"}).(*message.PreparedResult)
	if !ok {
		t.Fatal("PREPARE INSERT not answered with a prepared result")
	}
	if got, want := columns(ins.VariablesMetadata.Columns), []column{{"c", "bigint"}, {"p", "varchar"}, {"v", "blob"}, {"q", "bigint"}, {"[ttl]", "int"}}; !slices.Equal(got, want) {
		t.Errorf("INSERT bind markers %v, want %v", got, want)
	}
	if got := ins.VariablesMetadata.PkIndices; !slices.Equal(got, []uint16{1, 3}) {
		t.Errorf("INSERT pk indices %v, want [1 3] (p, q)", got)
	}

	sel, ok := r.do(&message.Prepare{Query: "SELECT c, v FROM ks.t WHERE q = ? AND p = ?"}).(*message.PreparedResult)
	if !ok {
		t.Fatal("PREPARE SELECT not answered with a prepared result")
	}
	if got, want := columns(sel.VariablesMetadata.Columns), []column{{"q", "bigint"}, {"p", "varchar"}}; !slices.Equal(got, want) {
		t.Errorf("SELECT bind markers %v, want %v", got, want)
	}
	if got, want := columns(sel.ResultMetadata.Columns), []column{{"c", "bigint"}, {"v", "blob"}}; !slices.Equal(got, want) {
		t.Errorf("SELECT result columns %v, want %v", got, want)
	}

	for c := int64(3); c >= 1; c-- {
		res := r.do(&message.Execute{QueryId: ins.PreparedQueryId, Options: &message.QueryOptions{PositionalValues: []*primitive.Value{
			int64Value(c), primitive.NewValue([]byte("a")), primitive.NewValue([]byte{byte(c)}), int64Value(7), int32Value(0),
		}}})
		if _, ok := res.(*message.VoidResult); !ok {
			t.Fatalf("EXECUTE INSERT: %v", res)
		}
	}
	rows, ok := r.do(&message.Execute{QueryId: sel.PreparedQueryId, Options: &message.QueryOptions{PositionalValues: []*primitive.Value{
		int64Value(7), primitive.NewValue([]byte("a")),
	}}}).(*message.RowsResult)
	if !ok {
		t.Fatal("EXECUTE SELECT not answered with rows")
	}
	var cs []int64
	for _, row := range rows.Data {
		cs = append(cs, int64(binary.BigEndian.Uint64(row[0])))
	}
	if !slices.Equal(cs, []int64{1, 2, 3}) {
		t.Errorf("rows by clustering key %v, want [1 2 3]", cs)
	}

	// A TTL of the wrong width (as a driver would send without the typed
	// marker) is refused, not misread.
	bad := r.do(&message.Execute{QueryId: ins.PreparedQueryId, Options: &message.QueryOptions{PositionalValues: []*primitive.Value{
		int64Value(9), primitive.NewValue([]byte("a")), primitive.NewValue(nil), int64Value(7), int64Value(60),
	}}})
	if inv, ok := bad.(*message.Invalid); !ok || !strings.Contains(inv.ErrorMessage, "TTL must be a 4-byte int") {
		t.Errorf("8-byte TTL: %v, want INVALID naming the TTL", bad)
	}
	if un, ok := r.do(&message.Execute{QueryId: []byte("nope"), Options: &message.QueryOptions{}}).(*message.Unprepared); !ok || string(un.Id) != "nope" {
		t.Errorf("unknown prepared id: want UNPREPARED naming it")
	}
}

// TestUnhandledRequestsGetErrorFrames: every request gets an answer on its
// stream, an error frame of the right kind when the server cannot do it,
// and the connection keeps serving afterwards.
func TestUnhandledRequestsGetErrorFrames(t *testing.T) {
	r := dialRaw(t, startServer(t))
	schema(t, r)
	tests := []struct {
		name string
		req  message.Message
		want string // the error frame's type
		msg  string
	}{
		{"a request type it does not handle", &message.AuthResponse{Token: []byte("x")}, "*message.ProtocolError", "unsupported request"},
		{"an unsupported statement", &message.Query{Query: "DELETE FROM ks.t WHERE p = 'a'"}, "*message.SyntaxError", "unsupported statement"},
		{"a range restriction", &message.Query{Query: "SELECT c FROM ks.t WHERE p = 'a' AND q = 1 AND c > 1"}, "*message.Invalid", "only equality"},
		{"a missing partition key part", &message.Query{Query: "SELECT c FROM ks.t WHERE p = 'a'"}, "*message.Invalid", "partition key column q must be restricted"},
		{"an unknown table", &message.Prepare{Query: "SELECT c FROM ks.none WHERE p = ?"}, "*message.Invalid", "unconfigured table"},
		{"a SELECT in a batch", &message.Batch{Children: []*message.BatchChild{{Query: "SELECT c FROM ks.t WHERE p = 'a' AND q = 1"}}}, "*message.Invalid", "only INSERT"},
		{"too few bind values", &message.Query{Query: "SELECT c FROM ks.t WHERE p = ? AND q = ?", Options: &message.QueryOptions{PositionalValues: []*primitive.Value{primitive.NewValue([]byte("a"))}}}, "*message.Invalid", "bind variables"},
		{"a bad paging state", &message.Query{Query: "SELECT c FROM ks.t WHERE p = 'a' AND q = 1", Options: &message.QueryOptions{PageSize: 2, PagingState: []byte{1}}}, "*message.ProtocolError", "paging state"},
		{"a null primary key part", &message.Query{Query: "INSERT INTO ks.t (p, q, c) VALUES (?, 1, 2)", Options: &message.QueryOptions{PositionalValues: []*primitive.Value{primitive.NewNullValue()}}}, "*message.Invalid", "null value for primary key part p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := r.do(tc.req)
			if got := fmt.Sprintf("%T", res); got != tc.want || !strings.Contains(fmt.Sprint(res), tc.msg) {
				t.Errorf("answer %s %v, want %s containing %q", got, res, tc.want, tc.msg)
			}
		})
	}
	if _, ok := r.do(&message.Options{}).(*message.Supported); !ok {
		t.Fatal("connection not serving after the errors")
	}
}

func driver(t *testing.T, srv *cqlserver.Server) *gocql.Session {
	t.Helper()
	c := gocql.NewCluster(srv.Addr())
	c.ProtoVersion = 4
	c.Timeout = 5 * time.Second
	c.Consistency = gocql.One
	c.NumConns = 2
	s, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestPagingThroughTheDriver: a read larger than the page size comes in
// pages the driver follows (all rows, in order, one request per page);
// a page state handed back resumes after its last row, also when rows
// were written in between; LIMIT counts across pages.
func TestPagingThroughTheDriver(t *testing.T) {
	srv := startServer(t)
	schema(t, dialRaw(t, srv))
	s := driver(t, srv)
	for c := int64(0); c < 25; c++ {
		if err := s.Query("INSERT INTO ks.t (p, q, c, v) VALUES (?, ?, ?, ?)", "a", int64(1), c*2, []byte{byte(c)}).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(q *gocql.Query) ([]int64, []byte) {
		t.Helper()
		it := q.Iter()
		var cs []int64
		var c int64
		for it.Scan(&c) {
			cs = append(cs, c)
		}
		state := it.PageState()
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		return cs, state
	}
	const sel = "SELECT c FROM ks.t WHERE p = ? AND q = ?"
	before := srv.Requests("execute")
	all, _ := read(s.Query(sel, "a", int64(1)).PageSize(10))
	if len(all) != 25 || !slices.IsSorted(all) || all[0] != 0 || all[24] != 48 {
		t.Fatalf("paged read: %v, want the 25 rows 0..48 in order", all)
	}
	if n := srv.Requests("execute") - before; n != 3 {
		t.Errorf("25 rows at 10 a page took %d requests, want 3", n)
	}

	page1, state := readPage(t, s.Query(sel, "a", int64(1)).PageSize(10).PageState(nil))
	if len(page1) != 10 || page1[9] != 18 || len(state) == 0 {
		t.Fatalf("first page %v (state %x), want 0..18 and a state", page1, state)
	}
	// A row written after the first page, sorting after it, is seen.
	if err := s.Query("INSERT INTO ks.t (p, q, c, v) VALUES (?, ?, ?, ?)", "a", int64(1), int64(19), []byte{1}).Exec(); err != nil {
		t.Fatal(err)
	}
	page2, _ := readPage(t, s.Query(sel, "a", int64(1)).PageSize(10).PageState(state))
	if want := []int64{19, 20, 22, 24, 26, 28, 30, 32, 34, 36}; !slices.Equal(page2, want) {
		t.Fatalf("second page %v, want %v", page2, want)
	}
	limited, _ := read(s.Query(sel+" LIMIT 15", "a", int64(1)).PageSize(4))
	if len(limited) != 15 || limited[14] != 26 {
		t.Fatalf("LIMIT 15 at 4 a page: %v, want the first 15 rows", limited)
	}
}

// readPage reads one page only (the driver does not fetch more).
func readPage(t *testing.T, q *gocql.Query) ([]int64, []byte) {
	t.Helper()
	it := q.Iter()
	var cs []int64
	for i := it.NumRows(); i > 0; i-- {
		var c int64
		if !it.Scan(&c) {
			break
		}
		cs = append(cs, c)
	}
	state := it.PageState()
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return cs, state
}

// TestConcurrentClients: sessions on their own connections and goroutines
// sharing one session (many streams on a connection) write and read at
// once; every client reads back exactly its own rows.
func TestConcurrentClients(t *testing.T) {
	srv := startServer(t)
	schema(t, dialRaw(t, srv))
	shared := driver(t, srv)
	const clients, rows = 8, 40
	sessions := make([]*gocql.Session, clients)
	for i := range clients {
		if i%2 == 0 {
			sessions[i] = driver(t, srv)
		} else {
			sessions[i] = shared
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, p := sessions[i], fmt.Sprint("client-", i)
			for c := range int64(rows) {
				if err := s.Query("INSERT INTO ks.t (p, q, c, v) VALUES (?, ?, ?, ?) USING TTL ?", p, int64(i), c, []byte(p), 3600).Exec(); err != nil {
					errs <- fmt.Errorf("%s insert %d: %w", p, c, err)
					return
				}
				if c%10 == 0 {
					// Reads interleave with the other clients' writes.
					if err := s.Query("SELECT c FROM ks.t WHERE p = ? AND q = ?", p, int64(i)).Iter().Close(); err != nil {
						errs <- fmt.Errorf("%s read: %w", p, err)
						return
					}
				}
			}
			it := s.Query("SELECT c, v FROM ks.t WHERE p = ? AND q = ?", p, int64(i)).PageSize(7).Iter()
			var got []int64
			var c int64
			var v []byte
			for it.Scan(&c, &v) {
				if string(v) != p {
					errs <- fmt.Errorf("%s read a row of %s", p, v)
					return
				}
				got = append(got, c)
			}
			if err := it.Close(); err != nil {
				errs <- fmt.Errorf("%s read back: %w", p, err)
				return
			}
			if len(got) != rows || !slices.IsSorted(got) {
				errs <- fmt.Errorf("%s read back %d rows %v, want %d in order", p, len(got), got, rows)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWithClientsConnected: Close ends open connections (the driver
// sees its queries fail) and returns; TestMain checks no goroutine stays.
func TestCloseWithClientsConnected(t *testing.T) {
	srv, err := cqlserver.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := driver(t, srv)
	raw := dialRaw(t, srv)
	schema(t, raw)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query("SELECT c FROM ks.t WHERE p = ? AND q = ?", "a", int64(1)).Exec(); err == nil {
		t.Fatal("query after Close succeeded")
	}
}
