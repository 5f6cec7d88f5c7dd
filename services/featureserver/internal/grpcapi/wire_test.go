package grpcapi

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// randomResult draws a result covering every kind, status (known or not)
// and shape of event time, with edge values (NaN, -0, extreme integers,
// empty and long strings) and references of varied lengths.
func randomResult(rng *rand.Rand) ([]string, *core.Result) {
	rows, cols := 1+rng.IntN(5), 1+rng.IntN(60)
	if rng.IntN(10) == 0 {
		rows = 1 + rng.IntN(150) // more rows than the encoder keeps on its stack
	}
	refs := make([]string, cols)
	for i := range refs {
		refs[i] = randomString(rng)
	}
	res := &core.Result{Rows: rows, Cols: cols, Values: make([]core.Value, rows*cols)}
	times := []int64{0, -1, -1_700_000_000_123, 1, 999, 1000, 1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_999, math.MaxInt64}
	for i := range res.Values {
		v := core.Value{Kind: core.Kind(rng.IntN(5)), Status: core.Status(rng.IntN(5))}
		if rng.IntN(20) == 0 {
			v.Status = core.Status(rng.IntN(256))
		}
		switch v.Kind {
		case core.KindDouble:
			v.Double = []float64{0, math.Copysign(0, -1), 1.5, -3e300, math.NaN(), math.Inf(1), math.Inf(-1), rng.NormFloat64()}[rng.IntN(8)]
		case core.KindInt64:
			v.Int = []int64{0, 1, -1, 127, 128, math.MaxInt64, math.MinInt64, rng.Int64(), -rng.Int64()}[rng.IntN(9)]
		case core.KindString:
			v.Str = randomString(rng)
		case core.KindBool:
			v.Bool = rng.IntN(2) == 1
		}
		if rng.IntN(4) > 0 {
			v.EventMs = times[rng.IntN(len(times))]
			if rng.IntN(2) == 0 {
				v.EventMs = 1_700_000_000_000 + rng.Int64N(1_000_000_000)
			}
		}
		res.Values[i] = v
	}
	return refs, res
}

func randomString(rng *rand.Rand) string {
	switch rng.IntN(200) {
	case 0, 1, 2, 3, 4, 5, 6, 7, 8, 9:
		return ""
	case 10, 11, 12, 13, 14, 15, 16, 17, 18, 19:
		return strings.Repeat("é", 64+rng.IntN(100)) // a length over one varint byte
	case 20:
		return strings.Repeat("x", 16<<10+rng.IntN(100)) // a three-byte length prefix
	default:
		return "wide:f" + string(rune('a'+rng.IntN(26))) + "_сумма_🙂"
	}
}

// wantWire is what the server sent before it wrote wire bytes itself.
func wantWire(t testing.TB, refs []string, res *core.Result) []byte {
	t.Helper()
	b, err := proto.Marshal(&featuresv1.GetOnlineFeaturesResponse{Features: refs, Results: referenceEncode(res)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeForTest(t testing.TB, pool *bufferPool, refs []string, res *core.Result) []byte {
	t.Helper()
	r, err := encodeResponse(refs, res, pool)
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.take()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.take(); err == nil {
		t.Fatal("a response was taken twice")
	}
	b := data.Materialize()
	data.Free() // back to the pool, so later rounds reuse dirty buffers
	return b
}

// checkWire checks the wire encoding of res against the reference: the
// same bytes, and (said the way a client sees it) the same message.
func checkWire(t *testing.T, pool *bufferPool, refs []string, res *core.Result) {
	t.Helper()
	got := encodeForTest(t, pool, refs, res)
	want := wantWire(t, refs, res)
	var gotMsg, wantMsg featuresv1.GetOnlineFeaturesResponse
	if err := proto.Unmarshal(got, &gotMsg); err != nil {
		t.Fatalf("the wire bytes do not decode: %v", err)
	}
	if err := proto.Unmarshal(want, &wantMsg); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&gotMsg, &wantMsg) {
		t.Fatalf("decoded response differs from the reference:\n got %v\nwant %v", &gotMsg, &wantMsg)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("wire bytes differ from proto.Marshal's (%d vs %d bytes)", len(got), len(want))
	}
}

// TestWireMatchesReference is a property test: for random results the
// wire encoder writes the bytes proto.Marshal writes for the reference
// encoder's messages.
func TestWireMatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 13))
	pool := &bufferPool{}
	for range 500 {
		refs, res := randomResult(rng)
		checkWire(t, pool, refs, res)
	}
}

// TestWireEveryKindStatusAndTime enumerates every kind × status × event
// time shape once, in one row.
func TestWireEveryKindStatusAndTime(t *testing.T) {
	t.Parallel()
	var vals []core.Value
	for k := core.KindNone; k <= core.KindBool; k++ {
		for st := core.StatusUnspecified; st <= core.StatusStale+1; st++ {
			for _, ms := range []int64{0, -5, 7, 1000, 1_700_000_000_000, 1_700_000_000_042} {
				vals = append(vals, core.Value{Kind: k, Status: st, Double: 2.5, Int: -7, Str: "s", Bool: true, EventMs: ms})
			}
		}
	}
	refs := make([]string, len(vals))
	for i := range refs {
		refs[i] = "v:f"
	}
	checkWire(t, &bufferPool{}, refs, &core.Result{Rows: 1, Cols: len(vals), Values: vals})
	// Zero values of every kind are still written (oneof members).
	zeros := []core.Value{{Kind: core.KindDouble}, {Kind: core.KindInt64}, {Kind: core.KindString}, {Kind: core.KindBool}}
	checkWire(t, &bufferPool{}, []string{"a", "b", "c", "d"}, &core.Result{Rows: 1, Cols: 4, Values: zeros})
}

// TestWireInvalidUTF8 refuses what proto.Marshal refuses.
func TestWireInvalidUTF8(t *testing.T) {
	t.Parallel()
	res := &core.Result{Rows: 2, Cols: 2, Values: []core.Value{
		{Kind: core.KindString, Str: "ok"}, {Kind: core.KindDouble},
		{Kind: core.KindInt64}, {Kind: core.KindString, Str: "bad\xff"},
	}}
	_, err := encodeResponse([]string{"v:a", "v:b"}, res, &bufferPool{})
	var bad errInvalidUTF8
	if !errors.As(err, &bad) || bad.row != 1 || bad.col != 1 {
		t.Fatalf("err %v, want invalid UTF-8 at [1,1]", err)
	}
	if _, err := proto.Marshal(&featuresv1.GetOnlineFeaturesResponse{Results: referenceEncode(res)}); err == nil {
		t.Fatal("proto.Marshal accepted invalid UTF-8; the encoder should too")
	}
}

// FuzzWire draws results from fuzzed seeds.
func FuzzWire(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(0), uint64(0))
	pool := &bufferPool{}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		refs, res := randomResult(rand.New(rand.NewPCG(a, b)))
		checkWire(t, pool, refs, res)
	})
}

func TestBufferPool(t *testing.T) {
	t.Parallel()
	p := &bufferPool{}
	for _, n := range []int{0, 1, 1023, 1024, 1025, 4096, 140_000, 1 << 20, 4 << 20, 4<<20 + 1, 9 << 20} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		if n <= 4<<20 && cap(*b) > max(1024, 2*n) {
			t.Fatalf("Get(%d): cap %d, more than twice", n, cap(*b))
		}
		p.Put(b)
		if b2 := p.Get(n); len(*b2) != n || cap(*b2) < n {
			t.Fatalf("Get(%d) after Put: len %d cap %d", n, len(*b2), cap(*b2))
		}
	}
	// A foreign buffer of an odd size is dropped, not handed out short.
	odd := make([]byte, 10, 3000)
	p.Put(&odd)
	if b := p.Get(4096); cap(*b) < 4096 {
		t.Fatalf("Get(4096) after a foreign Put: cap %d", cap(*b))
	}
}
