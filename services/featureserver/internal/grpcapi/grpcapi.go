// Package grpcapi is the featureserver's inbound gRPC port: it serves
// tributary.features.v1.FeatureService over the core's read path.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// DefaultMaxRequestBytes bounds a request's encoded size. It is under gRPC's
// own 4 MiB receive limit, so an oversized request gets InvalidArgument
// naming the size rather than the transport's generic ResourceExhausted.
const DefaultMaxRequestBytes = 2 << 20

// Server implements featuresv1.FeatureServiceServer.
type Server struct {
	featuresv1.UnimplementedFeatureServiceServer
	online   *core.Online
	catalog  *core.Catalog
	maxBytes int
}

var _ featuresv1.FeatureServiceServer = (*Server)(nil)

// New returns the gRPC service; maxRequestBytes 0 means the default.
func New(online *core.Online, catalog *core.Catalog, maxRequestBytes int) *Server {
	if maxRequestBytes <= 0 {
		maxRequestBytes = DefaultMaxRequestBytes
	}
	return &Server{online: online, catalog: catalog, maxBytes: maxRequestBytes}
}

// GetOnlineFeatures implements featuresv1.FeatureServiceServer.
func (s *Server) GetOnlineFeatures(ctx context.Context, req *featuresv1.GetOnlineFeaturesRequest) (*featuresv1.GetOnlineFeaturesResponse, error) {
	if n := proto.Size(req); n > s.maxBytes {
		return nil, status.Errorf(codes.InvalidArgument, "request: %d bytes, the limit is %d; split the entity rows over several calls", n, s.maxBytes)
	}
	rows := make([]map[string]string, len(req.GetEntities()))
	for i, e := range req.GetEntities() {
		if e == nil {
			return nil, status.Errorf(codes.InvalidArgument, "entities[%d]: empty entity row", i)
		}
		rows[i] = e.GetJoinKeys()
	}
	res, err := s.online.Get(ctx, req.GetFeatures(), rows)
	if err != nil {
		return nil, Status(err)
	}
	defer res.Release()
	return &featuresv1.GetOnlineFeaturesResponse{Features: req.GetFeatures(), Results: encode(res)}, nil
}

// encode builds the response vectors with a handful of allocations: the
// messages of each kind are allocated together and pointed into, and the
// values of a row with the same event time share one Timestamp (the
// features of one window have the newest event of that window), which
// marshals the same as separate copies.
func encode(res *core.Result) []*featuresv1.FeatureVector {
	n := len(res.Values)
	var nd, ni, ns, nb, nts int
	var seen eventTimes
	for i := range res.Values {
		v := &res.Values[i]
		if i%res.Cols == 0 {
			seen.reset()
		}
		switch v.Kind {
		case core.KindDouble:
			nd++
		case core.KindInt64:
			ni++
		case core.KindString:
			ns++
		case core.KindBool:
			nb++
		}
		if _, ok := seen.find(v.EventMs); v.EventMs > 0 && !ok {
			seen.add(v.EventMs, nil)
			nts++
		}
	}
	vecs := make([]featuresv1.FeatureVector, res.Rows)
	vecPtrs := make([]*featuresv1.FeatureVector, res.Rows)
	fvs := make([]featuresv1.FeatureValue, n)
	fvPtrs := make([]*featuresv1.FeatureValue, n)
	vals := make([]featuresv1.Value, nd+ni+ns+nb)
	ds := make([]featuresv1.Value_DoubleValue, nd)
	is := make([]featuresv1.Value_Int64Value, ni)
	ss := make([]featuresv1.Value_StringValue, ns)
	bs := make([]featuresv1.Value_BoolValue, nb)
	tss := make([]timestamppb.Timestamp, nts)
	var iv, id, ii, is2, ib, its int
	for i := range res.Values {
		v := &res.Values[i]
		if i%res.Cols == 0 {
			seen.reset()
		}
		fv := &fvs[i]
		fvPtrs[i] = fv
		fv.Status = featuresv1.FeatureStatus(v.Status)
		if v.Kind != core.KindNone {
			val := &vals[iv]
			iv++
			switch v.Kind {
			case core.KindDouble:
				ds[id].DoubleValue = v.Double
				val.Kind = &ds[id]
				id++
			case core.KindInt64:
				is[ii].Int64Value = v.Int
				val.Kind = &is[ii]
				ii++
			case core.KindString:
				ss[is2].StringValue = v.Str
				val.Kind = &ss[is2]
				is2++
			case core.KindBool:
				bs[ib].BoolValue = v.Bool
				val.Kind = &bs[ib]
				ib++
			}
			fv.Value = val
		}
		if v.EventMs > 0 {
			// The same finds and adds as when counting, so exactly nts
			// Timestamps are taken.
			ts, ok := seen.find(v.EventMs)
			if !ok {
				ts = &tss[its]
				its++
				ts.Seconds = v.EventMs / 1000
				ts.Nanos = int32(v.EventMs%1000) * 1e6
				seen.add(v.EventMs, ts)
			}
			fv.EventTime = ts
		}
	}
	for r := range vecs {
		vecs[r].Values = fvPtrs[r*res.Cols : (r+1)*res.Cols : (r+1)*res.Cols]
		vecPtrs[r] = &vecs[r]
	}
	return vecPtrs
}

// eventTimes remembers the last few distinct event times of a row; a row
// with more distinct times than it holds just gets more Timestamps.
type eventTimes struct {
	ms   [8]int64
	ts   [8]*timestamppb.Timestamp
	n    int
	next int
}

func (e *eventTimes) reset() { e.n, e.next = 0, 0 }

// find returns the Timestamp remembered for ms.
func (e *eventTimes) find(ms int64) (*timestamppb.Timestamp, bool) {
	for i := range e.n {
		if e.ms[i] == ms {
			return e.ts[i], true
		}
	}
	return nil, false
}

func (e *eventTimes) add(ms int64, ts *timestamppb.Timestamp) {
	if e.n < len(e.ms) {
		e.ms[e.n], e.ts[e.n] = ms, ts
		e.n++
		return
	}
	e.ms[e.next], e.ts[e.next] = ms, ts
	e.next = (e.next + 1) % len(e.ms)
}

// ListFeatureViews implements featuresv1.FeatureServiceServer.
func (s *Server) ListFeatureViews(context.Context, *featuresv1.ListFeatureViewsRequest) (*featuresv1.ListFeatureViewsResponse, error) {
	views := s.catalog.Views().All()
	out := &featuresv1.ListFeatureViewsResponse{Views: make([]*featuresv1.FeatureViewInfo, 0, len(views))}
	for _, v := range views {
		sp := v.Spec
		info := &featuresv1.FeatureViewInfo{
			Name:        sp.Name,
			Entity:      sp.Entity.Name,
			JoinKeys:    append([]string(nil), sp.Entity.JoinKeys...),
			SourceTopic: sp.Source.Topic,
		}
		for _, f := range sp.Features {
			fi := &featuresv1.FeatureInfo{Name: f.Name, Aggregation: f.Aggregation, Column: f.Column}
			if f.Window > 0 {
				fi.Window = goDuration(time.Duration(f.Window))
			}
			info.Features = append(info.Features, fi)
		}
		out.Views = append(out.Views, info)
	}
	return out, nil
}

// Status maps a core error to a gRPC status.
func Status(err error) error {
	var re *core.RequestError
	switch {
	case errors.As(err, &re):
		return status.Error(codes.InvalidArgument, re.Error())
	case errors.Is(err, core.ErrOverloaded):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded while reading features")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	default:
		return status.Error(codes.Unavailable, fmt.Sprintf("online store: %v", err))
	}
}

// goDuration renders d as a Go duration without zero trailing units
// ("24h", "10m", "1h30m").
func goDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
