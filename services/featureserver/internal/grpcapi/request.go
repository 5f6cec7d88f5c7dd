package grpcapi

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// Field numbers of GetOnlineFeaturesRequest and EntityRow (features.proto)
// and of a map entry.
const (
	fieldRequestFeatures protowire.Number = 1
	fieldRequestEntities protowire.Number = 2
	fieldRowJoinKeys     protowire.Number = 1
	fieldEntryKey        protowire.Number = 1
	fieldEntryValue      protowire.Number = 2
)

// request is a GetOnlineFeaturesRequest decoded by hand: the generated
// decoder allocates a map per entity row and a string per reference, and
// was a third of the server's CPU for a 1 × 50 call. The request's bytes
// are copied once into arena and every string is a part of it, so the
// strings are ordinary Go strings whoever keeps them. A request is reused
// across calls (Server.requests).
//
// It accepts and rejects what proto.Unmarshal does (request_test.go
// checks that by fuzzing): unknown fields and known fields of another
// wire type are skipped, a repeated map key keeps its last value, strings
// must be UTF-8.
type request struct {
	// maxBytes is the largest request decoded; set before decoding.
	maxBytes int
	size     int
	arena    string
	features []string
	rows     []rowSpan
	keys     []joinKey
	// err is why the bytes are not an acceptable request. The codec
	// cannot report it: gRPC turns a codec error into Internal, and a
	// malformed request is the caller's InvalidArgument.
	err error
}

type rowSpan struct{ lo, hi int }

type joinKey struct{ key, value string }

var _ core.Rows = (*request)(nil)

// Len implements core.Rows.
func (r *request) Len() int { return len(r.rows) }

// JoinKey implements core.Rows; a key given twice in a row has its last
// value, as in the map the generated code decodes.
func (r *request) JoinKey(i int, key string) (string, bool) {
	sp := r.rows[i]
	for j := sp.hi - 1; j >= sp.lo; j-- {
		if r.keys[j].key == key {
			return r.keys[j].value, true
		}
	}
	return "", false
}

// reset empties r for reuse, keeping its slices, dropping its strings.
func (r *request) reset() {
	clear(r.features)
	clear(r.keys)
	r.features, r.rows, r.keys = r.features[:0], r.rows[:0], r.keys[:0]
	r.arena, r.size, r.err = "", 0, nil
}

// decodeBuffers decodes the request in data (which the caller keeps
// owning).
func (r *request) decodeBuffers(data mem.BufferSlice) {
	if n := data.Len(); n > r.maxBytes {
		r.tooBig(n)
		return
	}
	if len(data) == 1 {
		r.decode(data[0].ReadOnlyData())
		return
	}
	r.decode(data.Materialize())
}

// decode decodes b; afterwards r.err tells whether it was a request.
func (r *request) decode(b []byte) {
	if len(b) > r.maxBytes {
		r.tooBig(len(b))
		return
	}
	r.size = len(b)
	r.arena = string(b)
	if err := r.decodeMessage(b); err != nil {
		r.err = err
	}
}

func (r *request) tooBig(n int) {
	r.size = n
	r.err = fmt.Errorf("request: %d bytes, the limit is %d; split the entity rows over several calls", n, r.maxBytes)
}

// wireError is a malformed request.
func wireError(at int, what string) error {
	return fmt.Errorf("request: %s at byte %d (not a tributary.features.v1.GetOnlineFeaturesRequest)", what, at)
}

// field reads one field's tag at b[at:]. A field number out of range is
// an error, as for proto.Unmarshal.
func field(b []byte, at int) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b[at:])
	if n < 0 || num > protowire.MaxValidNumber {
		return 0, 0, 0, wireError(at, "invalid field tag")
	}
	return num, typ, n, nil
}

// skip is the length of an unknown field's value at b[at:].
func skip(b []byte, at int, num protowire.Number, typ protowire.Type) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b[at:])
	if n < 0 {
		return 0, wireError(at, "invalid field value")
	}
	return n, nil
}

// bytesField reads a length-delimited value at b[at:]: its start, its end
// and the end of the field.
func bytesField(b []byte, at int) (int, int, error) {
	v, n := protowire.ConsumeBytes(b[at:])
	if n < 0 {
		return 0, 0, wireError(at, "truncated length-delimited field")
	}
	start := at + n - len(v)
	return start, start + len(v), nil
}

func (r *request) decodeMessage(b []byte) error {
	for at := 0; at < len(b); {
		num, typ, n, err := field(b, at)
		if err != nil {
			return err
		}
		at += n
		switch {
		case num == fieldRequestFeatures && typ == protowire.BytesType:
			lo, hi, err := bytesField(b, at)
			if err != nil {
				return err
			}
			if !utf8.Valid(b[lo:hi]) {
				return fmt.Errorf("request: features[%d] is not valid UTF-8", len(r.features))
			}
			r.features = append(r.features, r.arena[lo:hi])
			at = hi
		case num == fieldRequestEntities && typ == protowire.BytesType:
			lo, hi, err := bytesField(b, at)
			if err != nil {
				return err
			}
			if err := r.decodeRow(b, lo, hi); err != nil {
				return err
			}
			at = hi
		default:
			n, err := skip(b, at, num, typ)
			if err != nil {
				return err
			}
			at += n
		}
	}
	return nil
}

// decodeRow decodes the EntityRow in b[lo:hi].
func (r *request) decodeRow(b []byte, lo, hi int) error {
	row := rowSpan{lo: len(r.keys)}
	b = b[:hi]
	for at := lo; at < hi; {
		num, typ, n, err := field(b, at)
		if err != nil {
			return err
		}
		at += n
		if num == fieldRowJoinKeys && typ == protowire.BytesType {
			elo, ehi, err := bytesField(b, at)
			if err != nil {
				return err
			}
			kv, err := r.decodeEntry(b, elo, ehi)
			if err != nil {
				return err
			}
			r.keys = append(r.keys, kv)
			at = ehi
			continue
		}
		n, err = skip(b, at, num, typ)
		if err != nil {
			return err
		}
		at += n
	}
	row.hi = len(r.keys)
	r.rows = append(r.rows, row)
	return nil
}

// decodeEntry decodes one join_keys map entry in b[lo:hi]; a missing key
// or value is empty, a repeated one keeps its last occurrence.
func (r *request) decodeEntry(b []byte, lo, hi int) (joinKey, error) {
	var kv joinKey
	b = b[:hi]
	for at := lo; at < hi; {
		num, typ, n, err := field(b, at)
		if err != nil {
			return kv, err
		}
		at += n
		if (num == fieldEntryKey || num == fieldEntryValue) && typ == protowire.BytesType {
			slo, shi, err := bytesField(b, at)
			if err != nil {
				return kv, err
			}
			if !utf8.Valid(b[slo:shi]) {
				return kv, fmt.Errorf("request: entities[%d]: a join key or value is not valid UTF-8", len(r.rows))
			}
			if num == fieldEntryKey {
				kv.key = r.arena[slo:shi]
			} else {
				kv.value = r.arena[slo:shi]
			}
			at = shi
			continue
		}
		n, err = skip(b, at, num, typ)
		if err != nil {
			return kv, err
		}
		at += n
	}
	return kv, nil
}
