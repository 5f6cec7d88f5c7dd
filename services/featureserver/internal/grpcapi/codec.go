package grpcapi

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Codec is the featureserver's gRPC codec: the proto codec, except for
// GetOnlineFeatures, whose request is decoded by hand (see request) and
// whose response, already in wire form (see encodeResponse), passes
// through as it is. The Server's GetOnlineFeatures handler needs it;
// install it with ServerOptions.
type Codec struct {
	proto encoding.CodecV2
}

var _ encoding.CodecV2 = Codec{}

// NewCodec returns the codec, delegating to gRPC's registered proto codec.
func NewCodec() Codec { return Codec{proto: encoding.GetCodecV2(protocodec.Name)} }

// ServerOptions are the options a gRPC server serving the Server needs.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(NewCodec())}
}

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*encodedResponse); ok {
		return r.take()
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2. A GetOnlineFeatures request is
// decoded by hand; one that is not acceptable is marked (request.err)
// rather than failed here, so the caller gets InvalidArgument.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*request); ok {
		r.decodeBuffers(data)
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Name implements encoding.CodecV2: it is the proto codec.
func (c Codec) Name() string { return protocodec.Name }

// bufferPool keeps response buffers by power-of-two capacity. Unlike gRPC's
// default pool it does not zero a buffer it hands out: the encoder writes
// every byte of it, and clearing a 1 MiB buffer for a 140 KB answer costs
// more than writing the answer.
type bufferPool struct {
	tiers [maxTier - minTier + 1]sync.Pool
}

const (
	minTier = 10 // 1 KiB: smaller buffers are not pooled by gRPC anyway
	maxTier = 22 // 4 MiB: the largest gRPC message a client takes by default
)

var _ mem.BufferPool = (*bufferPool)(nil)

// tier is the index of the smallest tier holding n bytes, or -1.
func tier(n int) int {
	t := max(minTier, bits.Len(uint(n-1)))
	if n <= 0 {
		t = minTier
	}
	if t > maxTier {
		return -1
	}
	return t - minTier
}

// Get implements mem.BufferPool.
func (p *bufferPool) Get(n int) *[]byte {
	t := tier(n)
	if t < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+minTier))
	return &b
}

// Put implements mem.BufferPool.
func (p *bufferPool) Put(b *[]byte) {
	c := cap(*b)
	// Only buffers of exactly a tier's capacity come from Get.
	if t := tier(c); t >= 0 && c == 1<<(t+minTier) {
		p.tiers[t].Put(b)
	}
}
