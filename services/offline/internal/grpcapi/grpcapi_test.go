package grpcapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	offlinev1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/offline/v1"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

// t0 is on a 5-minute tile boundary plus a minute, so a 10m window at
// t0+seconds holds every click.
var t0 = time.Date(2026, 11, 30, 12, 1, 0, 0, time.UTC).UnixMilli()

func click(off int64, user string, atMs int64) aggregate.Record {
	return aggregate.Record{Topic: "events.clicks", Partition: 0, Offset: off, TimeMs: atMs,
		Value: fmt.Appendf(nil, `{"user_id":%q,"page":"/","ts_ms":%d}`, user, atMs)}
}

func client(t *testing.T, rowsPerMessage int) offlinev1.OfflineServiceClient {
	t.Helper()
	views, err := featurespec.LoadDir("../../../../examples/fraud/features")
	if err != nil {
		t.Fatal(err)
	}
	history := pointintime.Records{click(0, "u1", t0), click(1, "u1", t0+1000), click(2, "u1", t0+2000)}
	lim := DefaultLimits()
	lim.RowsPerMessage = rowsPerMessage
	lim.MaxSpineRows = 10
	srv := grpc.NewServer()
	New(func() []*featurespec.View { return views }, history, lim).Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return offlinev1.NewOfflineServiceClient(conn)
}

func row(user string, atMs int64, label float64) *offlinev1.SpineRow {
	return &offlinev1.SpineRow{JoinKeys: []string{user}, EventTimestamp: timestamppb.New(time.UnixMilli(atMs)),
		Passthrough: []*featuresv1.Value{{Kind: &featuresv1.Value_DoubleValue{DoubleValue: label}}}}
}

// call sends reqs and collects the answer.
func call(ctx context.Context, c offlinev1.OfflineServiceClient, reqs ...*offlinev1.GetTrainingSetRequest) ([]string, []*offlinev1.TrainingSetRow, *offlinev1.TrainingSetSummary, int, error) {
	st, err := c.GetTrainingSet(ctx)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	for _, r := range reqs {
		if err := st.Send(r); err != nil && err != io.EOF {
			return nil, nil, nil, 0, err
		}
	}
	if err := st.CloseSend(); err != nil {
		return nil, nil, nil, 0, err
	}
	var cols []string
	var rows []*offlinev1.TrainingSetRow
	var sum *offlinev1.TrainingSetSummary
	msgs := 0
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return cols, rows, sum, msgs, nil
		}
		if err != nil {
			return nil, nil, nil, msgs, err
		}
		msgs++
		if len(m.GetColumns()) > 0 {
			cols = m.GetColumns()
		}
		rows = append(rows, m.GetRows()...)
		if m.GetSummary() != nil {
			sum = m.GetSummary()
		}
	}
}

func text(v *featuresv1.Value) string {
	switch k := v.GetKind().(type) {
	case *featuresv1.Value_DoubleValue:
		return fmt.Sprint(k.DoubleValue)
	case *featuresv1.Value_Int64Value:
		return fmt.Sprint(k.Int64Value)
	case *featuresv1.Value_StringValue:
		return k.StringValue
	case *featuresv1.Value_BoolValue:
		return fmt.Sprint(k.BoolValue)
	}
	return "null"
}

func TestTrainingSetRowsInSpineOrderWithStatusesAndPassThrough(t *testing.T) {
	c := client(t, 2)
	opt := &offlinev1.TrainingSetOptions{Features: []string{"user_clicks:click_count_10m"}, JoinKeys: []string{"user_id"}, PassthroughColumns: []string{"label"}}
	// The spine is sent over two messages and out of time order; the
	// answer keeps the spine's order.
	cols, rows, sum, msgs, err := call(t.Context(), c,
		&offlinev1.GetTrainingSetRequest{Options: opt, Rows: []*offlinev1.SpineRow{row("u1", t0+3000, 1), row("u1", t0-1, 0)}},
		&offlinev1.GetTrainingSetRequest{Rows: []*offlinev1.SpineRow{row("u1", t0+1500, 0), row("u2", t0+3000, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	wantCols := "[user_id event_timestamp label user_clicks__click_count_10m user_clicks__click_count_10m__status]"
	if fmt.Sprint(cols) != wantCols {
		t.Fatalf("columns %v, want %s", cols, wantCols)
	}
	want := [][]string{
		{"u1", fmt.Sprint(t0 + 3000), "1", "3", "PRESENT"},
		{"u1", fmt.Sprint(t0 - 1), "0", "null", "NOT_FOUND"},
		{"u1", fmt.Sprint(t0 + 1500), "0", "2", "PRESENT"},
		{"u2", fmt.Sprint(t0 + 3000), "1", "null", "NOT_FOUND"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		var got []string
		for _, v := range r.GetValues() {
			got = append(got, text(v))
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("row %d: %v, want %v", i, got, want[i])
		}
	}
	if sum.GetRows() != 4 || sum.GetRecords() != 3 || sum.GetNotFound() != 2 {
		t.Errorf("summary %v, want 4 rows, 3 records, 2 not found", sum)
	}
	if msgs != 2 {
		t.Errorf("%d response messages for 4 rows at 2 per message, want 2", msgs)
	}
}

func TestTrainingSetBadRequests(t *testing.T) {
	c := client(t, 1024)
	ok := &offlinev1.TrainingSetOptions{Features: []string{"user_clicks:click_count_10m"}, JoinKeys: []string{"user_id"}, PassthroughColumns: []string{"label"}}
	many := make([]*offlinev1.SpineRow, 11)
	for i := range many {
		many[i] = row("u1", t0, 0)
	}
	for _, tc := range []struct {
		name string
		reqs []*offlinev1.GetTrainingSetRequest
		code codes.Code
		msg  string
	}{
		{"no options", []*offlinev1.GetTrainingSetRequest{{Rows: []*offlinev1.SpineRow{row("u1", t0, 0)}}}, codes.InvalidArgument, "options: missing"},
		{"unknown view", []*offlinev1.GetTrainingSetRequest{{Options: &offlinev1.TrainingSetOptions{Features: []string{"nope:x"}, JoinKeys: []string{"user_id"}}}}, codes.InvalidArgument, `unknown feature view "nope"`},
		{"missing join key", []*offlinev1.GetTrainingSetRequest{{Options: &offlinev1.TrainingSetOptions{Features: []string{"user_clicks:*"}, JoinKeys: []string{"merchant_id"}}}}, codes.InvalidArgument, `"user_id" is missing`},
		{"row without instant", []*offlinev1.GetTrainingSetRequest{{Options: ok, Rows: []*offlinev1.SpineRow{{JoinKeys: []string{"u1"}, Passthrough: []*featuresv1.Value{{}}}}}}, codes.InvalidArgument, "spine row 1: event_timestamp: missing"},
		{"short row", []*offlinev1.GetTrainingSetRequest{{Options: ok, Rows: []*offlinev1.SpineRow{row("u1", t0, 0), {JoinKeys: []string{"u1"}, EventTimestamp: timestamppb.New(time.UnixMilli(t0))}}}}, codes.InvalidArgument, "spine row 2: passthrough: 0 values, want 1"},
		{"options twice", []*offlinev1.GetTrainingSetRequest{{Options: ok}, {Options: ok}}, codes.InvalidArgument, "only the first message"},
		{"too many rows", []*offlinev1.GetTrainingSetRequest{{Options: ok, Rows: many}}, codes.ResourceExhausted, "more than 10 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, _, err := call(t.Context(), c, tc.reqs...)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !contains(st.Message(), tc.msg) {
				t.Fatalf("error %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
