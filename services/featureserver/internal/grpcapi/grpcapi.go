// Package grpcapi is the featureserver's inbound gRPC port: it serves
// tributary.features.v1.FeatureService over the core's read path.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// DefaultMaxRequestBytes bounds a request's encoded size. It is under gRPC's
// own 4 MiB receive limit, so an oversized request gets InvalidArgument
// naming the size rather than the transport's generic ResourceExhausted.
const DefaultMaxRequestBytes = 2 << 20

// Server serves tributary.features.v1.FeatureService. Register it with
// Register on a gRPC server built with ServerOptions: its GetOnlineFeatures
// answers are written in wire form and need the package's Codec.
type Server struct {
	online   *core.Online
	catalog  *core.Catalog
	maxBytes int
	pool     *bufferPool
	requests sync.Pool
	known    knownRefs
}

// New returns the gRPC service; maxRequestBytes 0 means the default.
func New(online *core.Online, catalog *core.Catalog, maxRequestBytes int) *Server {
	if maxRequestBytes <= 0 {
		maxRequestBytes = DefaultMaxRequestBytes
	}
	s := &Server{online: online, catalog: catalog, maxBytes: maxRequestBytes, pool: &bufferPool{}}
	s.requests.New = func() any { return new(request) }
	return s
}

// featureService is what the service description dispatches to.
type featureService interface {
	newRequest() *request
	freeRequest(*request)
	getOnlineFeatures(ctx context.Context, req *request) (*encodedResponse, error)
	ListFeatureViews(ctx context.Context, req *featuresv1.ListFeatureViewsRequest) (*featuresv1.ListFeatureViewsResponse, error)
}

var _ featureService = (*Server)(nil)

// Register registers the service on r (a *grpc.Server built with
// ServerOptions). It is the service of features.proto under the same
// names, so clients, reflection and interceptors see no difference from
// the generated registration; only GetOnlineFeatures' request decoding and
// response encoding are done here. Without the Codec its calls fail with
// INTERNAL (gRPC's proto codec refuses the request type).
func (s *Server) Register(r grpc.ServiceRegistrar) { r.RegisterService(serviceDesc(), s) }

func serviceDesc() *grpc.ServiceDesc {
	gen := &featuresv1.FeatureService_ServiceDesc
	return &grpc.ServiceDesc{
		ServiceName: gen.ServiceName,
		HandlerType: (*featureService)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "GetOnlineFeatures", Handler: getOnlineFeaturesHandler},
			{MethodName: "ListFeatureViews", Handler: listFeatureViewsHandler},
		},
		Streams:  []grpc.StreamDesc{},
		Metadata: gen.Metadata,
	}
}

// getOnlineFeaturesHandler decodes the request with the Codec into a
// reused request, which interceptors see as the call's request; it is
// recycled once the answer is encoded (the answer holds no part of it).
func getOnlineFeaturesHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(featureService)
	req := s.newRequest()
	defer s.freeRequest(req)
	if err := dec(req); err != nil {
		return nil, err
	}
	handle := func(ctx context.Context, req any) (any, error) {
		resp, err := s.getOnlineFeatures(ctx, req.(*request))
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	if interceptor == nil {
		return handle(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: featuresv1.FeatureService_GetOnlineFeatures_FullMethodName}, handle)
}

func listFeatureViewsHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(featuresv1.ListFeatureViewsRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	s := srv.(featureService)
	handle := func(ctx context.Context, req any) (any, error) {
		return s.ListFeatureViews(ctx, req.(*featuresv1.ListFeatureViewsRequest))
	}
	if interceptor == nil {
		return handle(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: featuresv1.FeatureService_ListFeatureViews_FullMethodName}, handle)
}

func (s *Server) newRequest() *request {
	r := s.requests.Get().(*request)
	r.maxBytes, r.known = s.maxBytes, &s.known
	return r
}

func (s *Server) freeRequest(r *request) {
	// Huge requests do not pin their buffers in the pool.
	if cap(r.features) > 1<<12 || cap(r.keys) > 1<<14 || cap(r.text) > 1<<16 {
		return
	}
	r.reset()
	s.requests.Put(r)
}

// getOnlineFeatures answers GetOnlineFeatures in wire form.
func (s *Server) getOnlineFeatures(ctx context.Context, req *request) (*encodedResponse, error) {
	if req.err != nil {
		return nil, status.Error(codes.InvalidArgument, req.err.Error())
	}
	res, err := s.online.Get(ctx, req.features, req)
	if err != nil {
		return nil, Status(err)
	}
	defer res.Release()
	resp, err := encodeResponse(req.features, res, s.pool)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return resp, nil
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
