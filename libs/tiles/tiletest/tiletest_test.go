package tiletest

import (
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/libs/tiles"
)

func TestDiff(t *testing.T) {
	tile := func(n int64) *tiles.Tile {
		return &tiles.Tile{View: "v", Entity: "e", Features: map[string]*tiles.IR{"f": {Count: n}}}
	}
	a := map[string]*tiles.Tile{"k1": tile(1), "k2": tile(2)}
	if err := Diff(a, map[string]*tiles.Tile{"k1": tile(1), "k2": tile(2)}); err != nil {
		t.Fatalf("equal sets: %v", err)
	}
	for name, got := range map[string]map[string]*tiles.Tile{
		"changed": {"k1": tile(1), "k2": tile(3)},
		"missing": {"k1": tile(1)},
		"extra":   {"k1": tile(1), "k2": tile(2), "k3": tile(3)},
	} {
		err := Diff(a, got)
		if err == nil || !strings.Contains(err.Error(), "1 of ") {
			t.Errorf("%s: %v, want one tile reported", name, err)
		}
	}
}
