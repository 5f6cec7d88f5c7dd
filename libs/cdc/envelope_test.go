package cdc

import "testing"

func TestSequenceRoundTrip(t *testing.T) {
	p := Position{CommitLSN: 24023128, LSN: 24023000}
	got, err := ParseSequence(p.SequenceString())
	if err != nil || got != p {
		t.Fatalf("round trip: got %v, %v; want %v", got, err, p)
	}
	for _, bad := range []string{"", "[]", `["1"]`, `["a","2"]`, "nope"} {
		if _, err := ParseSequence(bad); err == nil {
			t.Errorf("ParseSequence(%q): want error", bad)
		}
	}
}

func TestDeduperDropsReplayedEvents(t *testing.T) {
	d := NewDeduper()
	stream := []struct {
		part int
		op   string
		pos  Position
		want bool
	}{
		{0, OpCreate, Position{100, 90}, true},
		{0, OpCreate, Position{100, 95}, true},
		{1, OpCreate, Position{100, 92}, true},
		{0, OpCreate, Position{100, 90}, false}, // replay after restart
		{0, OpCreate, Position{100, 95}, false},
		{0, OpUpdate, Position{200, 50}, true}, // later commit, earlier change LSN
		{0, OpRead, Position{}, true},
		{1, OpCreate, Position{100, 92}, false},
	}
	for i, e := range stream {
		if got := d.Fresh("cdc.public.t", e.part, e.op, e.pos); got != e.want {
			t.Errorf("event %d: Fresh = %v, want %v", i, got, e.want)
		}
	}
}

func FuzzParseSequence(f *testing.F) {
	f.Add(`["1","2"]`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSequence(s)
		if err != nil {
			return
		}
		q, err := ParseSequence(p.SequenceString())
		if err != nil || q != p {
			t.Fatalf("%q parsed to %v but its rendering does not round-trip", s, p)
		}
	})
}

// FuzzSequenceFastPathMatchesJSON: whatever the fast path parses, the
// encoding/json path parses to the same position.
func FuzzSequenceFastPathMatchesJSON(f *testing.F) {
	f.Add(`["1","2"]`)
	f.Add(`["18446744073709551615","0"]`)
	f.Add(`["18446744073709551616","0"]`)
	f.Add(`[ "1" , "2" ]`)
	f.Add(`["01","2"]`)
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseSequenceFast(s)
		if !ok {
			return
		}
		q, err := parseSequenceJSON(s)
		if err != nil || q != p {
			t.Fatalf("%q: fast path %v, encoding/json %v %v", s, p, q, err)
		}
	})
}
