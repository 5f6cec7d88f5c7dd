package grpcapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// The GetOnlineFeatures response is written straight from core.Result to
// protobuf wire bytes: building thousands of generated messages (one
// FeatureValue, Value, oneof wrapper and Timestamp per value) and marshalling
// them by reflection was most of the server's CPU for wide answers. The
// bytes are exactly what proto.Marshal writes for the message the values
// describe (fields in number order, zero scalars omitted, oneof members
// always written); wire_test.go checks that against the generated types.
//
// Wire tags of tributary.features.v1 (features.proto) and
// google.protobuf.Timestamp; every field number is below 16, so every tag is
// one byte.
const (
	tagResponseFeatures = 1<<3 | byte(protowire.BytesType)   // GetOnlineFeaturesResponse.features
	tagResponseResults  = 2<<3 | byte(protowire.BytesType)   // GetOnlineFeaturesResponse.results
	tagVectorValues     = 1<<3 | byte(protowire.BytesType)   // FeatureVector.values
	tagFeatureValue     = 1<<3 | byte(protowire.BytesType)   // FeatureValue.value
	tagFeatureStatus    = 2<<3 | byte(protowire.VarintType)  // FeatureValue.status
	tagFeatureEventTime = 3<<3 | byte(protowire.BytesType)   // FeatureValue.event_time
	tagValueDouble      = 1<<3 | byte(protowire.Fixed64Type) // Value.double_value
	tagValueInt64       = 2<<3 | byte(protowire.VarintType)  // Value.int64_value
	tagValueString      = 3<<3 | byte(protowire.BytesType)   // Value.string_value
	tagValueBool        = 4<<3 | byte(protowire.VarintType)  // Value.bool_value
	tagTimeSeconds      = 1<<3 | byte(protowire.VarintType)  // Timestamp.seconds
	tagTimeNanos        = 2<<3 | byte(protowire.VarintType)  // Timestamp.nanos
)

// varintSize is protowire.SizeVarint without its call.
func varintSize(v uint64) int { return int(9*uint32(bits.Len64(v))+64) / 64 }

// lenSize is the size of a length-delimited field of n bytes after its tag.
func lenSize(n int) int { return varintSize(uint64(n)) + n }

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// valueBodySize is the size of the Value message of v (0 when v has none).
func valueBodySize(v *core.Value) int {
	switch v.Kind {
	case core.KindDouble:
		return 1 + 8
	case core.KindInt64:
		return 1 + varintSize(uint64(v.Int))
	case core.KindString:
		return 1 + lenSize(len(v.Str))
	case core.KindBool:
		return 1 + 1
	}
	return 0
}

// timeParts splits an event time into google.protobuf.Timestamp fields.
func timeParts(ms int64) (sec uint64, nanos uint64) {
	// Only positive times are written, so both parts are non-negative.
	return uint64(ms / 1000), uint64(ms%1000) * 1e6
}

func timeBodySize(ms int64) int {
	sec, nanos := timeParts(ms)
	n := 0
	if sec != 0 {
		n += 1 + varintSize(sec)
	}
	if nanos != 0 {
		n += 1 + varintSize(nanos)
	}
	return n
}

// featureValueSize is the size of the FeatureValue message of v.
func featureValueSize(v *core.Value) int {
	n := 0
	if vb := valueBodySize(v); vb > 0 {
		n += 1 + lenSize(vb)
	}
	if v.Status != 0 {
		n += 1 + varintSize(uint64(v.Status))
	}
	if v.EventMs > 0 {
		n += 1 + lenSize(timeBodySize(v.EventMs))
	}
	return n
}

func appendFeatureValue(b []byte, v *core.Value) []byte {
	if vb := valueBodySize(v); vb > 0 {
		b = append(b, tagFeatureValue)
		b = appendVarint(b, uint64(vb))
		switch v.Kind {
		case core.KindDouble:
			b = append(b, tagValueDouble)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Double))
		case core.KindInt64:
			b = append(b, tagValueInt64)
			b = appendVarint(b, uint64(v.Int))
		case core.KindString:
			b = append(b, tagValueString)
			b = appendVarint(b, uint64(len(v.Str)))
			b = append(b, v.Str...)
		case core.KindBool:
			x := byte(0)
			if v.Bool {
				x = 1
			}
			b = append(b, tagValueBool, x)
		}
	}
	if v.Status != 0 {
		b = append(b, tagFeatureStatus)
		b = appendVarint(b, uint64(v.Status))
	}
	if v.EventMs > 0 {
		b = append(b, tagFeatureEventTime)
		b = appendVarint(b, uint64(timeBodySize(v.EventMs)))
		sec, nanos := timeParts(v.EventMs)
		if sec != 0 {
			b = append(b, tagTimeSeconds)
			b = appendVarint(b, sec)
		}
		if nanos != 0 {
			b = append(b, tagTimeNanos)
			b = appendVarint(b, nanos)
		}
	}
	return b
}

// encodedResponse is a GetOnlineFeaturesResponse in wire form. The codec
// hands its buffer to the transport, which returns it to the pool once
// the bytes are written.
type encodedResponse struct {
	data mem.BufferSlice
}

// take hands the bytes over, once: a call marshals its response once.
func (r *encodedResponse) take() (mem.BufferSlice, error) {
	if r.data == nil {
		return nil, errors.New("grpcapi: response marshalled twice")
	}
	d := r.data
	r.data = nil
	return d, nil
}

// errInvalidUTF8 mirrors what proto.Marshal refuses in a string field.
type errInvalidUTF8 struct{ row, col int }

func (e errInvalidUTF8) Error() string {
	return fmt.Sprintf("results[%d].values[%d]: string value is not valid UTF-8", e.row, e.col)
}

// encodeResponse writes GetOnlineFeaturesResponse{features: refs, results:
// the rows of res} into a buffer of pool.
func encodeResponse(refs []string, res *core.Result, pool mem.BufferPool) (*encodedResponse, error) {
	var stack [64]int
	rowSizes := stack[:0]
	if res.Rows > len(stack) {
		rowSizes = make([]int, 0, res.Rows)
	}
	total := 0
	for _, ref := range refs {
		total += 1 + lenSize(len(ref))
	}
	for r := range res.Rows {
		n := 0
		row := res.Values[r*res.Cols : (r+1)*res.Cols]
		for c := range row {
			v := &row[c]
			if v.Kind == core.KindString && !utf8.ValidString(v.Str) {
				return nil, errInvalidUTF8{r, c}
			}
			n += 1 + lenSize(featureValueSize(v))
		}
		rowSizes = append(rowSizes, n)
		total += 1 + lenSize(n)
	}
	buf := pool.Get(total)
	b := (*buf)[:0]
	for _, ref := range refs {
		b = append(b, tagResponseFeatures)
		b = appendVarint(b, uint64(len(ref)))
		b = append(b, ref...)
	}
	for r := range res.Rows {
		b = append(b, tagResponseResults)
		b = appendVarint(b, uint64(rowSizes[r]))
		row := res.Values[r*res.Cols : (r+1)*res.Cols]
		for c := range row {
			v := &row[c]
			b = append(b, tagVectorValues)
			b = appendVarint(b, uint64(featureValueSize(v)))
			b = appendFeatureValue(b, v)
		}
	}
	if len(b) != total || cap(b) != cap(*buf) {
		// The sizes above and the writes disagree: a bug, never sent.
		return nil, fmt.Errorf("grpcapi: encoded %d bytes of a %d byte response", len(b), total)
	}
	*buf = b
	return &encodedResponse{data: mem.BufferSlice{mem.NewBuffer(buf, pool)}}, nil
}
