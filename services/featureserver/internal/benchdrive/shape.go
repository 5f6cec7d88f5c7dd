package main

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// encodedRequest is a GetOnlineFeaturesRequest marshalled once, up front.
type encodedRequest []byte

// shape is what --decode shape reads of an answer: its rows, and whether
// every row has the expected number of values.
type shape struct {
	wantValues int
	rows       int
}

// shapeCodec sends encoded requests as they are and reads answers into a
// shape, walking the wire bytes without building messages.
type shapeCodec struct{}

func (shapeCodec) Marshal(v any) (mem.BufferSlice, error) {
	req, ok := v.(encodedRequest)
	if !ok {
		return nil, fmt.Errorf("shape codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(req)}, nil
}

func (shapeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s, ok := v.(*shape)
	if !ok {
		return fmt.Errorf("shape codec: cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return s.read(buf.ReadOnlyData())
}

func (shapeCodec) Name() string { return "proto" }

var errMalformed = errors.New("malformed GetOnlineFeaturesResponse")

// read counts the results (field 2) of a GetOnlineFeaturesResponse and
// the values (field 1) of each.
func (s *shape) read(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if num != 2 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			b = b[n:]
			continue
		}
		row, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		values := 0
		for len(row) > 0 {
			num, typ, n := protowire.ConsumeTag(row)
			if n < 0 {
				return errMalformed
			}
			row = row[n:]
			if n = protowire.ConsumeFieldValue(num, typ, row); n < 0 {
				return errMalformed
			}
			row = row[n:]
			if num == 1 && typ == protowire.BytesType {
				values++
			}
		}
		if values != s.wantValues {
			return fmt.Errorf("%d values in a row for %d features", values, s.wantValues)
		}
		s.rows++
	}
	return nil
}

func shapeCaller(conn *grpc.ClientConn, reqs []*featuresv1.GetOnlineFeaturesRequest) (func(ctx context.Context, i int) error, error) {
	enc := make([]encodedRequest, len(reqs))
	for i, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("data: request %d: %w", i, err)
		}
		enc[i] = b
	}
	codec := grpc.ForceCodecV2(shapeCodec{})
	return func(ctx context.Context, i int) error {
		req := reqs[i%len(reqs)]
		s := &shape{wantValues: len(req.GetFeatures())}
		if err := conn.Invoke(ctx, featuresv1.FeatureService_GetOnlineFeatures_FullMethodName, enc[i%len(enc)], s, codec); err != nil {
			return err
		}
		if s.rows != len(req.GetEntities()) {
			return fmt.Errorf("%d result rows for %d entities", s.rows, len(req.GetEntities()))
		}
		return nil
	}, nil
}
