package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() core.TileStore {
		dir := t.TempDir()
		return func() core.TileStore {
			s, err := embedded.Open(dir, embedded.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

func open(t *testing.T, dir string, opts embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func putAll(t *testing.T, s *embedded.Store, ws ...core.TileWrite) {
	t.Helper()
	if err := s.PutTiles(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, embedded.Options{})
	a := storetest.Tile("v", "u", 0, 0, 1)
	b := storetest.Tile("v", "u", 300_000, 1_700_000_100_000, 2)
	putAll(t, s, core.TileWrite{Tile: a})
	putAll(t, s, core.TileWrite{Tile: b})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, embedded.LogName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the second record's write.
	if err := os.Truncate(path, st.Size()-5); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, embedded.Options{})
	got, err := s.GetTiles(context.Background(), "v", "u", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Full("v", "u").Key() != a.Key() {
		t.Fatalf("after torn tail: got %d tiles, want only %s", len(got), a.Key())
	}
	// Writes continue after the cut, and survive another restart.
	putAll(t, s, core.TileWrite{Tile: b})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, embedded.Options{})
	defer s.Close()
	if got, _ := s.GetTiles(context.Background(), "v", "u", nil); len(got) != 2 {
		t.Fatalf("after rewrite and restart: %d tiles, want 2", len(got))
	}
}

func TestCorruptionInsideTheLogIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, embedded.Options{})
	putAll(t, s, core.TileWrite{Tile: storetest.Tile("v", "u", 0, 0, 1)})
	putAll(t, s, core.TileWrite{Tile: storetest.Tile("v", "w", 0, 0, 2)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, embedded.LogName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff // inside the first record's body
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = embedded.Open(dir, embedded.Options{})
	if err == nil || !strings.Contains(err.Error(), "offset 0") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("open corrupt log: err = %v, want a checksum error at offset 0", err)
	}
}

func TestSecondOpenOfADirIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, embedded.Options{})
	defer s.Close()
	if _, err := embedded.Open(dir, embedded.Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: err = %v, want in use", err)
	}
}

func TestCompactionKeepsLiveTilesOnly(t *testing.T) {
	dir := t.TempDir()
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	s := open(t, dir, embedded.Options{Now: clock, CompactMinBytes: 1})
	keep := storetest.Tile("v", "keep", 0, 0, 1)
	putAll(t, s, core.TileWrite{Tile: keep})
	for i := range 50 {
		putAll(t, s, core.TileWrite{Tile: storetest.Tile("v", "u", 300_000, 1_699_999_800_000, i+1), ExpiresMs: now.Add(time.Hour).UnixMilli()})
	}
	st := s.Stats()
	if st.Tiles != 2 {
		t.Fatalf("tiles = %d, want 2", st.Tiles)
	}
	if st.LogBytes > 2*st.LiveLog {
		t.Fatalf("log %d bytes for %d live bytes: no compaction happened", st.LogBytes, st.LiveLog)
	}
	// Expiry and a sweep shrink the index; the next write compacts.
	now = now.Add(2 * time.Hour)
	putAll(t, s, core.TileWrite{Tile: storetest.Tile("v", "other", 0, 0, 3)})
	if st := s.Stats(); st.Tiles != 2 {
		t.Fatalf("after expiry: tiles = %d, want 2 (keep, other)", st.Tiles)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, embedded.Options{Now: clock})
	defer s.Close()
	got, err := s.GetTiles(context.Background(), "v", "keep", nil)
	if err != nil || len(got) != 1 || got[0].Full("v", "keep").Features["amount"].Count != 1 {
		t.Fatalf("after compaction and restart: %v %v", got, err)
	}
	if got, _ := s.GetTiles(context.Background(), "v", "u", nil); len(got) != 0 {
		t.Fatalf("expired tiles came back after restart: %d", len(got))
	}
}

// BenchmarkGetTiles reads an entity of 200 tiles from the index.
func BenchmarkGetTiles(b *testing.B) {
	s, err := embedded.Open(b.TempDir(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkGetTiles(b, s)
}

// FuzzOpen replays arbitrary log files: Open either refuses them with an
// error or yields a store that reads and writes.
func FuzzOpen(f *testing.F) {
	seedDir := f.TempDir()
	s, err := embedded.Open(seedDir, embedded.Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.PutTiles(context.Background(), []core.TileWrite{{Tile: storetest.Tile("v", "u", 0, 0, 1)}, core.TileWrite{Tile: storetest.Tile("v", "u", 300_000, 1_700_000_100_000, 2)}}); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(seedDir, embedded.LogName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, embedded.LogName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := embedded.Open(dir, embedded.Options{})
		if err != nil {
			return
		}
		defer s.Close()
		tl := storetest.Tile("fuzz", "e", 0, 0, 3)
		if err := s.PutTiles(context.Background(), []core.TileWrite{{Tile: tl}}); err != nil {
			t.Fatalf("put after open: %v", err)
		}
		got, err := s.GetTiles(context.Background(), "fuzz", "e", nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("get after put: %v %v", got, err)
		}
	})
}
