package grpcapi

import (
	"fmt"
	"slices"
	"sync/atomic"
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
// was a third of the server's CPU for a 1 × 50 call. Strings are ordinary
// Go strings, whoever keeps them: references are those of a list asked
// before (knownRefs) or parts of one new string holding them all, join
// keys and values parts of one string per request. A request is reused
// across calls (Server.requests).
//
// It accepts and rejects what proto.Unmarshal does (request_test.go
// checks that by fuzzing): unknown fields and known fields of another
// wire type are skipped, a repeated map key keeps its last value, strings
// must be UTF-8.
type request struct {
	// maxBytes is the largest request decoded and known the lists asked
	// before; both set before decoding.
	maxBytes int
	known    *knownRefs
	size     int
	features []string
	rows     []rowSpan
	keys     []joinKey
	// While decoding: where the references and join keys are in the bytes,
	// and the bytes of new strings.
	featureAt []span
	keyAt     []keySpan
	text      []byte
	// err is why the bytes are not an acceptable request. The codec
	// cannot report it: gRPC turns a codec error into Internal, and a
	// malformed request is the caller's InvalidArgument.
	err error
}

type rowSpan struct{ lo, hi int }

type joinKey struct{ key, value string }

type span struct{ lo, hi int }

type keySpan struct{ key, value span }

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
	r.featureAt, r.keyAt, r.text = r.featureAt[:0], r.keyAt[:0], r.text[:0]
	r.size, r.err = 0, nil
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
	if err := r.decodeMessage(b); err != nil {
		r.err = err
		return
	}
	r.strings(b)
}

// strings makes the decoded references and join keys strings.
func (r *request) strings(b []byte) {
	if refs := r.known.find(b, r.featureAt); refs != nil {
		r.features = append(r.features[:0], refs...)
	} else {
		r.text = r.text[:0]
		for _, sp := range r.featureAt {
			r.text = append(r.text, b[sp.lo:sp.hi]...)
		}
		all, at := string(r.text), 0
		for _, sp := range r.featureAt {
			r.features = append(r.features, all[at:at+sp.hi-sp.lo])
			at += sp.hi - sp.lo
		}
		r.known.add(r.features)
	}
	if len(r.keyAt) == 0 {
		return
	}
	r.text = r.text[:0]
	for _, kv := range r.keyAt {
		r.text = append(r.text, b[kv.key.lo:kv.key.hi]...)
		r.text = append(r.text, b[kv.value.lo:kv.value.hi]...)
	}
	all, at := string(r.text), 0
	for _, kv := range r.keyAt {
		k := all[at : at+kv.key.hi-kv.key.lo]
		at += len(k)
		v := all[at : at+kv.value.hi-kv.value.lo]
		at += len(v)
		r.keys = append(r.keys, joinKey{key: k, value: v})
	}
}

// knownRefs remembers the last few reference lists asked for (clients
// usually ask the same features every time), so a request asking one
// again gets its strings without allocating. Lists are immutable once
// published.
type knownRefs struct {
	lists [4]atomic.Pointer[[]string]
	next  atomic.Uint32
}

// find returns the known list of exactly the references at spans in b.
func (k *knownRefs) find(b []byte, spans []span) []string {
	if k == nil {
		return nil
	}
	for i := range k.lists {
		p := k.lists[i].Load()
		if p == nil || len(*p) != len(spans) {
			continue
		}
		same := true
		for j, sp := range spans {
			if string(b[sp.lo:sp.hi]) != (*p)[j] {
				same = false
				break
			}
		}
		if same {
			return *p
		}
	}
	return nil
}

// add remembers refs (a copy of the slice; the strings are immutable).
func (k *knownRefs) add(refs []string) {
	if k == nil {
		return
	}
	l := slices.Clone(refs)
	k.lists[k.next.Add(1)%uint32(len(k.lists))].Store(&l)
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
				return fmt.Errorf("request: features[%d] is not valid UTF-8", len(r.featureAt))
			}
			r.featureAt = append(r.featureAt, span{lo, hi})
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
	row := rowSpan{lo: len(r.keyAt)}
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
			r.keyAt = append(r.keyAt, kv)
			at = ehi
			continue
		}
		n, err = skip(b, at, num, typ)
		if err != nil {
			return err
		}
		at += n
	}
	row.hi = len(r.keyAt)
	r.rows = append(r.rows, row)
	return nil
}

// decodeEntry decodes one join_keys map entry in b[lo:hi]; a missing key
// or value is empty, a repeated one keeps its last occurrence.
func (r *request) decodeEntry(b []byte, lo, hi int) (keySpan, error) {
	var kv keySpan
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
				kv.key = span{slo, shi}
			} else {
				kv.value = span{slo, shi}
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
