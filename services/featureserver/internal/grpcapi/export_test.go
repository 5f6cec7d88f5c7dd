package grpcapi

import (
	"context"

	"google.golang.org/protobuf/proto"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// GetOnlineFeaturesWire answers the encoded request in in process, as the
// gRPC handler does, and appends the wire bytes of the answer to dst.
func (s *Server) GetOnlineFeaturesWire(ctx context.Context, in, dst []byte) ([]byte, error) {
	req := s.newRequest()
	defer s.freeRequest(req)
	req.decode(in)
	r, err := s.getOnlineFeatures(ctx, req)
	if err != nil {
		return dst, err
	}
	data, err := r.take()
	if err != nil {
		return dst, err
	}
	defer data.Free()
	for _, b := range data {
		dst = append(dst, b.ReadOnlyData()...)
	}
	return dst, nil
}

// GetOnlineFeaturesForTest answers req in process, decoded as a client
// decodes it.
func (s *Server) GetOnlineFeaturesForTest(ctx context.Context, req *featuresv1.GetOnlineFeaturesRequest) (*featuresv1.GetOnlineFeaturesResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	b, err := s.GetOnlineFeaturesWire(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	resp := &featuresv1.GetOnlineFeaturesResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
