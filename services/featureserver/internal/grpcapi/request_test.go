package grpcapi

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
)

// checkDecode decodes b both ways and compares: the same verdict, and for
// an accepted request the same references and rows (a row as the map the
// generated code builds, looked up through core.Rows).
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	want := &featuresv1.GetOnlineFeaturesRequest{}
	werr := proto.Unmarshal(b, want)
	// Twice: the second decode finds the references known.
	known := &knownRefs{}
	for range 2 {
		r := &request{maxBytes: 1 << 30, known: known}
		r.decode(b)
		if (werr == nil) != (r.err == nil) {
			t.Fatalf("proto.Unmarshal: %v; decode: %v", werr, r.err)
		}
		if werr != nil {
			return
		}
		checkDecoded(t, r, want)
	}
}

func checkDecoded(t *testing.T, r *request, want *featuresv1.GetOnlineFeaturesRequest) {
	t.Helper()
	if !slices.Equal(r.features, want.GetFeatures()) {
		t.Fatalf("features %q, want %q", r.features, want.GetFeatures())
	}
	if r.Len() != len(want.GetEntities()) {
		t.Fatalf("%d rows, want %d", r.Len(), len(want.GetEntities()))
	}
	for i, e := range want.GetEntities() {
		got := map[string]string{}
		for _, kv := range r.keys[r.rows[i].lo:r.rows[i].hi] {
			got[kv.key] = kv.value
		}
		if !maps.Equal(got, e.GetJoinKeys()) {
			t.Fatalf("row %d: %q, want %q", i, got, e.GetJoinKeys())
		}
		for k, v := range e.GetJoinKeys() {
			if gv, ok := r.JoinKey(i, k); !ok || gv != v {
				t.Fatalf("row %d: JoinKey(%q) = %q, %v; want %q", i, k, gv, ok, v)
			}
		}
		if _, ok := r.JoinKey(i, "\x00absent"); ok {
			t.Fatalf("row %d: an absent key was found", i)
		}
	}
}

// requestSeeds are well-formed requests and the corners of the wire
// format: unknown fields of every type, known fields with another wire
// type, repeated and missing map keys and values, bad UTF-8 in every
// string, out-of-range field numbers, truncation, non-minimal varints and
// stray group ends.
func requestSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	add := func(b []byte) { seeds = append(seeds, b) }
	msg := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tag := protowire.AppendTag
	str := func(b []byte, num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(b, num, protowire.BytesType), s)
	}
	sub := func(b []byte, num protowire.Number, body []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), body)
	}
	entry := func(k, v string) []byte { return str(str(nil, 1, k), 2, v) }
	row := func(entries ...[]byte) []byte {
		var b []byte
		for _, e := range entries {
			b = sub(b, 1, e)
		}
		return b
	}

	add(nil)
	add(msg(&featuresv1.GetOnlineFeaturesRequest{Features: []string{"wide:a", "", "wide:é"}, Entities: []*featuresv1.EntityRow{
		{JoinKeys: map[string]string{"user_id": "u1"}}, {}, {JoinKeys: map[string]string{"a": "1", "b": "", "": "x"}},
	}}))
	// A key given twice keeps its last value; a missing key or value is "".
	add(sub(nil, 2, row(entry("user_id", "first"), entry("user_id", "last"), str(nil, 2, "no key"), str(nil, 1, "no value"))))
	// Repeated key and value fields inside one entry: the last one counts.
	add(sub(nil, 2, row(str(str(str(str(nil, 1, "k1"), 2, "v1"), 1, "k2"), 2, "v2"))))
	// Unknown fields of every wire type, at every level.
	unknown := func(b []byte) []byte {
		b = protowire.AppendVarint(tag(b, 9, protowire.VarintType), 300)
		b = protowire.AppendFixed32(tag(b, 10, protowire.Fixed32Type), 1)
		b = protowire.AppendFixed64(tag(b, 11, protowire.Fixed64Type), 1)
		b = str(b, 12, "x")
		b = tag(tag(protowire.AppendVarint(tag(tag(b, 13, protowire.StartGroupType), 1, protowire.VarintType), 5), 13, protowire.EndGroupType), protowire.MaxValidNumber, protowire.VarintType)
		return append(b, 0)
	}
	add(unknown(str(sub(nil, 2, unknown(sub(nil, 1, unknown(entry("user_id", "u"))))), 1, "wide:a")))
	// Known field numbers with another wire type are unknown fields.
	add(protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 7))
	add(protowire.AppendFixed32(tag(nil, 2, protowire.Fixed32Type), 7))
	add(sub(nil, 2, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 7)))
	add(sub(nil, 2, sub(nil, 1, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 7))))
	// Bad UTF-8 in a reference, a key, a value; and in an unknown field (fine).
	add(str(nil, 1, "wide:\xff"))
	add(sub(nil, 2, row(entry("user\xc0", "u"))))
	add(sub(nil, 2, row(entry("user_id", "\xed\xa0\x80"))))
	add(str(nil, 7, "\xff"))
	// Field numbers 0 and past the maximum; reserved wire types.
	add([]byte{0x02, 0x00})
	add(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3|2))
	add([]byte{0x0e, 0x00})
	add([]byte{0x0f})
	add(sub(nil, 2, []byte{0x0f}))
	add(sub(nil, 2, sub(nil, 1, []byte{0x00, 0x00})))
	// Truncation at every depth; a length past the end.
	full := sub(str(nil, 1, "wide:a"), 2, row(entry("user_id", "u1")))
	for i := range full {
		add(full[:i])
	}
	add([]byte{0x0a, 0x05, 'a'})
	add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	// Non-minimal varints for a tag and a length.
	add([]byte{0x8a, 0x00, 0x81, 0x00, 'a'})
	// A stray group end, a group left open, mismatched group ends.
	add(tag(nil, 3, protowire.EndGroupType))
	add(tag(nil, 3, protowire.StartGroupType))
	add(tag(tag(nil, 3, protowire.StartGroupType), 4, protowire.EndGroupType))
	add(sub(nil, 2, tag(nil, 3, protowire.EndGroupType)))
	add(sub(nil, 2, sub(nil, 1, tag(nil, 3, protowire.EndGroupType))))
	// An overlong 10-byte varint.
	add(append(tag(nil, 9, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02))
	return seeds
}

func TestRequestDecodeMatchesProto(t *testing.T) {
	t.Parallel()
	for _, b := range requestSeeds(t) {
		checkDecode(t, b)
	}
}

// FuzzRequestDecode: the hand decoder accepts and rejects what
// proto.Unmarshal does, and decodes the same request.
func FuzzRequestDecode(f *testing.F) {
	for _, b := range requestSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkDecode)
}

// TestRequestSizeLimit refuses a request over the limit without decoding it.
func TestRequestSizeLimit(t *testing.T) {
	t.Parallel()
	b, err := proto.Marshal(&featuresv1.GetOnlineFeaturesRequest{Features: []string{strings.Repeat("x", 100)}})
	if err != nil {
		t.Fatal(err)
	}
	r := &request{maxBytes: len(b) - 1}
	r.decode(b)
	if r.err == nil || !strings.Contains(r.err.Error(), "the limit is") || len(r.features) != 0 {
		t.Fatalf("over the limit: err %v, features %q", r.err, r.features)
	}
	r.reset()
	r.maxBytes = len(b)
	r.decode(b)
	if r.err != nil || len(r.features) != 1 {
		t.Fatalf("at the limit: err %v, features %q", r.err, r.features)
	}
}

// TestRequestReuse: a reused request holds nothing of the previous one.
func TestRequestReuse(t *testing.T) {
	t.Parallel()
	first, _ := proto.Marshal(&featuresv1.GetOnlineFeaturesRequest{Features: []string{"a", "b"}, Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"k": "1"}}}})
	second, _ := proto.Marshal(&featuresv1.GetOnlineFeaturesRequest{Features: []string{"c"}, Entities: []*featuresv1.EntityRow{{}}})
	r := &request{maxBytes: 1 << 20}
	r.decode(first)
	r.reset()
	r.decode(second)
	if r.err != nil || !slices.Equal(r.features, []string{"c"}) || r.Len() != 1 {
		t.Fatalf("second request: err %v features %q rows %d", r.err, r.features, r.Len())
	}
	if _, ok := r.JoinKey(0, "k"); ok {
		t.Fatal("a join key of the previous request leaked into the next")
	}
}

// TestKnownReferenceLists: a list of references asked before is decoded
// into the strings of that list, without allocating them again; a list
// differing anywhere (a reference, the count) gets its own strings.
func TestKnownReferenceLists(t *testing.T) {
	// Not parallel: it counts allocations.
	enc := func(refs ...string) []byte {
		b, err := proto.Marshal(&featuresv1.GetOnlineFeaturesRequest{Features: refs, Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u1"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	known := &knownRefs{}
	decode := func(b []byte) *request {
		r := &request{maxBytes: 1 << 20, known: known}
		r.decode(b)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	}
	refs := make([]string, 50)
	for i := range refs {
		refs[i] = fmt.Sprintf("wide:f%d_sum_10m", i)
	}
	first := decode(enc(refs...))
	again := decode(enc(refs...))
	if !slices.Equal(again.features, refs) || unsafe.StringData(again.features[7]) != unsafe.StringData(first.features[7]) {
		t.Fatal("a list asked again was not decoded into the known strings")
	}
	other := slices.Clone(refs)
	other[49] = "wide:other"
	for _, b := range [][]byte{enc(other...), enc(refs[:49]...)} {
		r := decode(b)
		if unsafe.StringData(r.features[7]) == unsafe.StringData(first.features[7]) {
			t.Fatalf("a different list (%d references) got the known strings", len(r.features))
		}
	}
	// The first list is still known beside the two others.
	b := enc(refs...)
	r := &request{maxBytes: 1 << 20, known: known}
	allocs := testing.AllocsPerRun(100, func() {
		r.reset()
		r.decode(b)
	})
	if r.err != nil || !slices.Equal(r.features, refs) {
		t.Fatalf("decoded %q, %v", r.features, r.err)
	}
	if allocs > 1 {
		t.Fatalf("%v allocations to decode a known list and one row, want at most 1 (the row's strings)", allocs)
	}
}
