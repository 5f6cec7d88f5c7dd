// Package grpcapi serves tributary.offline.v1.OfflineService: point-in-time
// training sets over gRPC, the spine streamed in and the rows streamed out.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	offlinev1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/offline/v1"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

// Limits bound what one call may ask.
type Limits struct {
	// MaxSpineRows is the most spine rows one call may send (the spine is
	// held in memory: it is sorted by instant before the replay).
	MaxSpineRows int
	// RowsPerMessage is how many output rows one response message holds.
	RowsPerMessage int
}

// DefaultLimits suit a training set of a few million rows.
func DefaultLimits() Limits { return Limits{MaxSpineRows: 10_000_000, RowsPerMessage: 1024} }

// Server implements OfflineService.
type Server struct {
	offlinev1.UnimplementedOfflineServiceServer
	views   func() []*featurespec.View
	history pointintime.History
	limits  Limits
}

var _ offlinev1.OfflineServiceServer = (*Server)(nil)

// New returns a server computing from the views views returns (the
// current ones: they may be reloaded) and the archive's history.
func New(views func() []*featurespec.View, history pointintime.History, limits Limits) *Server {
	return &Server{views: views, history: history, limits: limits}
}

// Register registers the server on s.
func (s *Server) Register(g *grpc.Server) { offlinev1.RegisterOfflineServiceServer(g, s) }

// GetTrainingSet implements OfflineService.
func (s *Server) GetTrainingSet(stream grpc.BidiStreamingServer[offlinev1.GetTrainingSetRequest, offlinev1.GetTrainingSetResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "no request: the first message must carry options")
		}
		return err
	}
	opt := first.GetOptions()
	if opt == nil {
		return status.Error(codes.InvalidArgument, "options: missing from the first message")
	}
	views := s.views()
	feats, err := pointintime.ResolveRefs(views, opt.GetFeatures())
	if err != nil {
		return status.Error(codes.InvalidArgument, "features: "+err.Error())
	}
	sp, err := newSpine(opt, feats)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	shard := pointintime.Shard{I: int(opt.GetShardIndex()), N: int(opt.GetShardCount())}
	if err := shard.Validate(); err != nil {
		return status.Error(codes.InvalidArgument, "shard: "+err.Error())
	}
	for msg := first; ; {
		for i, r := range msg.GetRows() {
			if err := sp.add(r); err != nil {
				return status.Errorf(codes.InvalidArgument, "spine row %d: %v", sp.Len()+1, err)
			}
			if sp.Len() > s.limits.MaxSpineRows {
				return status.Errorf(codes.ResourceExhausted, "spine: more than %d rows (row %d of this message); shard the spine (shard_index/shard_count)", s.limits.MaxSpineRows, i+1)
			}
		}
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if msg.GetOptions() != nil {
			return status.Error(codes.InvalidArgument, "options: only the first message may carry them")
		}
	}
	res, err := pointintime.Compute(ctx, pointintime.Request{
		Views: views, Refs: opt.GetFeatures(), Spine: sp, History: s.history,
		EventTimeOnly: opt.GetEventTimeOnly(), Shard: shard,
	})
	if err != nil {
		return computeStatus(ctx, err)
	}
	return s.send(stream, opt, sp, res)
}

// send streams the header, the rows in chunks and the summary.
func (s *Server) send(stream grpc.BidiStreamingServer[offlinev1.GetTrainingSetRequest, offlinev1.GetTrainingSetResponse], opt *offlinev1.TrainingSetOptions, sp *spine, res *pointintime.Result) error {
	cols := append([]string(nil), opt.GetJoinKeys()...)
	cols = append(cols, "event_timestamp")
	cols = append(cols, opt.GetPassthroughColumns()...)
	for _, f := range res.Features {
		cols = append(cols, f.Column, f.Column+"__status")
	}
	notFound, stale := res.Statuses()
	sum := &offlinev1.TrainingSetSummary{Rows: int64(len(res.Rows)), Records: res.Stats.Records, NotFound: notFound, Stale: stale}
	msg := &offlinev1.GetTrainingSetResponse{Columns: cols}
	for k, i := range res.Rows {
		row := &offlinev1.TrainingSetRow{Values: make([]*featuresv1.Value, 0, len(cols))}
		for _, key := range sp.keys[i] {
			row.Values = append(row.Values, str(key))
		}
		row.Values = append(row.Values, &featuresv1.Value{Kind: &featuresv1.Value_Int64Value{Int64Value: sp.events[i]}})
		row.Values = append(row.Values, sp.passthrough[i]...)
		for _, v := range res.Row(k) {
			row.Values = append(row.Values, value(v), str(v.Status.String()))
		}
		msg.Rows = append(msg.Rows, row)
		if len(msg.Rows) >= s.limits.RowsPerMessage && k < len(res.Rows)-1 {
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &offlinev1.GetTrainingSetResponse{}
		}
	}
	msg.Summary = sum
	return stream.Send(msg)
}

func computeStatus(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, "training set: "+err.Error())
}

func str(s string) *featuresv1.Value {
	return &featuresv1.Value{Kind: &featuresv1.Value_StringValue{StringValue: s}}
}

// value is a feature value on the wire; a Value with no kind (null) when
// there is none (a repeated message field cannot hold nil).
func value(v served.Value) *featuresv1.Value {
	if v.Status == served.StatusNotFound {
		return &featuresv1.Value{}
	}
	switch v.Kind {
	case served.KindDouble:
		return &featuresv1.Value{Kind: &featuresv1.Value_DoubleValue{DoubleValue: v.Double}}
	case served.KindInt64:
		return &featuresv1.Value{Kind: &featuresv1.Value_Int64Value{Int64Value: v.Int}}
	case served.KindBool:
		return &featuresv1.Value{Kind: &featuresv1.Value_BoolValue{BoolValue: v.Bool}}
	case served.KindString:
		return str(v.Str)
	}
	return &featuresv1.Value{}
}

// spine is a spine sent over gRPC: rows of join key values, an instant
// and pass-through values.
type spine struct {
	index       map[string]int
	keys        [][]string
	events      []int64
	passthrough [][]*featuresv1.Value
	npass       int
}

func newSpine(opt *offlinev1.TrainingSetOptions, feats []pointintime.Feature) (*spine, error) {
	sp := &spine{index: map[string]int{}, npass: len(opt.GetPassthroughColumns())}
	for i, k := range opt.GetJoinKeys() {
		if k == "" {
			return nil, fmt.Errorf("options.join_keys[%d]: empty", i)
		}
		if _, dup := sp.index[k]; dup {
			return nil, fmt.Errorf("options.join_keys[%d]: %q appears twice", i, k)
		}
		sp.index[k] = i
	}
	for _, f := range feats {
		for _, k := range f.View.Entity.JoinKeys {
			if _, ok := sp.index[k]; !ok {
				return nil, fmt.Errorf("options.join_keys: %q is missing (a join key of feature view %s)", k, f.View.Name)
			}
		}
	}
	return sp, nil
}

func (sp *spine) add(r *offlinev1.SpineRow) error {
	if len(r.GetJoinKeys()) != len(sp.index) {
		return fmt.Errorf("join_keys: %d values, want %d (options.join_keys)", len(r.GetJoinKeys()), len(sp.index))
	}
	if r.GetEventTimestamp() == nil {
		return errors.New("event_timestamp: missing")
	}
	if err := r.GetEventTimestamp().CheckValid(); err != nil {
		return fmt.Errorf("event_timestamp: %w", err)
	}
	if len(r.GetPassthrough()) != sp.npass {
		return fmt.Errorf("passthrough: %d values, want %d (options.passthrough_columns)", len(r.GetPassthrough()), sp.npass)
	}
	sp.keys = append(sp.keys, r.GetJoinKeys())
	sp.events = append(sp.events, r.GetEventTimestamp().AsTime().UnixMilli())
	sp.passthrough = append(sp.passthrough, r.GetPassthrough())
	return nil
}

// Len implements pointintime.Spine.
func (sp *spine) Len() int { return len(sp.events) }

// EventMs implements pointintime.Spine.
func (sp *spine) EventMs(i int) int64 { return sp.events[i] }

// JoinKey implements pointintime.Spine.
func (sp *spine) JoinKey(i int, key string) (string, bool) {
	c, ok := sp.index[key]
	if !ok {
		return "", false
	}
	return sp.keys[i][c], true
}
