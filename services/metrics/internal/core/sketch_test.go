package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// TestSketchRowFormatUnchanged: latency sketches encode byte for byte as
// rows did before the sketch moved to libs/quantile (testdata written by
// the previous implementation from the same values), and those rows decode
// to sketches that encode and answer the same again.
func TestSketchRowFormatUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var out bytes.Buffer
	for _, vals := range [][]float64{
		{},
		{0, math.NaN(), 1e-4},
		{1, 1, 2.5, 40, 1e-3, 0.0011},
		{1e300, 5, 0.002},
	} {
		var s Sketch
		for _, v := range vals {
			s.Add(v)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s\n", b)
	}
	var s Sketch
	for range 5000 {
		s.Add(math.Exp(rng.NormFloat64()) * 5)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "%s\n", b)
	fmt.Fprintln(&out, s.Quantile(0.5), s.Quantile(0.99))

	want, err := os.ReadFile("testdata/latency_sketch.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("sketch rows differ from the previous format:\n%s\nwant\n%s", out.Bytes(), want)
	}
	for i, line := range bytes.Split(bytes.TrimSpace(want), []byte("\n"))[:5] {
		var d Sketch
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		again, _ := json.Marshal(d)
		if !bytes.Equal(again, line) {
			t.Errorf("row %d decodes and encodes to %s, want %s", i, again, line)
		}
	}
}

func TestSketchRejectsBadRows(t *testing.T) {
	for _, row := range []string{
		`{"o":-400,"c":[1]}`,  // below SketchMin's bucket
		`{"o":-340,"c":[-1]}`, // negative count
		`{"o":-340,"c":null,"z":-2}`,
		`{"o":1703,"c":[1]}`, // beyond the top bucket
	} {
		var s Sketch
		if err := json.Unmarshal([]byte(row), &s); err == nil {
			t.Errorf("%s decoded without error", row)
		}
	}
}
