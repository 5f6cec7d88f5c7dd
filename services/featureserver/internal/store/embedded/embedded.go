// Package embedded is the featureserver's embedded persistent tile store,
// the dev default: an append-only log of tile records in a data directory
// with the live tiles indexed in memory. A write appends a batch as one
// write and fsyncs it before it returns; opening replays the log (a torn
// record at the tail, from a crash mid-write, is cut off). When most of the
// log is superseded or expired tiles it is rewritten with only live ones.
package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

var _ core.TileStore = (*Store)(nil)

// LogName is the log file's name in the data directory.
const LogName = "tiles.log"

// maxRecord bounds one record, so a corrupt length cannot make Open
// allocate without bound.
const maxRecord = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options tune a Store; zero values get defaults.
type Options struct {
	// Now is the clock deciding expiry.
	Now func() time.Time
	// CompactMinBytes is the log size below which it is never rewritten.
	CompactMinBytes int64
	// SweepInterval is how often writes also drop expired tiles of
	// entities that are no longer written.
	SweepInterval time.Duration
	Log           *slog.Logger
}

type item struct {
	t    *core.Tile
	exp  int64
	size int64
}

type entry struct{ items []item }

// Store is the embedded tile store.
type Store struct {
	dir  string
	opts Options

	wmu       sync.Mutex // serialises writers, compaction and Close
	f         *os.File
	size      int64
	lastSweep time.Time
	unlock    func() error

	mu    sync.RWMutex // guards index and live
	index map[string]map[string]*entry
	live  int64
	count int
	// compact rebuilds tiles the way the index keeps them (core.Tile).
	compact *core.TileCompactor
}

// Open opens (creating it when needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CompactMinBytes == 0 {
		opts.CompactMinBytes = 64 << 20
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data-dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, index: map[string]map[string]*entry{}, compact: core.NewTileCompactor(), unlock: unlock, lastSweep: opts.Now()}
	if err := s.replay(); err != nil {
		_ = unlock()
		return nil, err
	}
	return s, nil
}

// replay loads the log into the index and leaves the file open for appends.
func (s *Store) replay() error {
	path := filepath.Join(s.dir, LogName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open tile log: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		return err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat tile log: %w", err)
	}
	total := st.Size()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	nowMs := s.opts.Now().UnixMilli()
	for off < total {
		t, exp, n, err := readRecord(r, total-off)
		if err != nil {
			if errors.Is(err, errTorn) {
				s.opts.Log.Warn("tile log: cutting off a torn record at the tail", "offset", off, "bytes", total-off, "err", err)
				if terr := f.Truncate(off); terr != nil {
					_ = f.Close()
					return fmt.Errorf("truncate torn tile log tail at %d: %w", off, terr)
				}
				break
			}
			_ = f.Close()
			return fmt.Errorf("tile log %s at offset %d: %w", path, off, err)
		}
		off += n
		s.insert(t, exp, n, nowMs)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		_ = f.Close()
		return fmt.Errorf("seek tile log: %w", err)
	}
	s.f, s.size = f, off
	return nil
}

var errTorn = errors.New("torn record")

// readRecord reads one record of at most avail bytes. A record that does
// not fit in avail or fails its checksum while being the last one is torn.
func readRecord(r *bufio.Reader, avail int64) (*tiles.Tile, int64, int64, error) {
	var hdr [8]byte
	if avail < int64(len(hdr)) {
		return nil, 0, 0, fmt.Errorf("%w: %d header bytes", errTorn, avail)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, 0, fmt.Errorf("read record header: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n > avail-8 {
		return nil, 0, 0, fmt.Errorf("%w: record of %d bytes, %d left", errTorn, n, avail-8)
	}
	if n < 8 || n > maxRecord {
		return nil, 0, 0, fmt.Errorf("record length %d out of range", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, 0, fmt.Errorf("read record: %w", err)
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		if n == avail-8 {
			return nil, 0, 0, fmt.Errorf("%w: checksum mismatch in the last record", errTorn)
		}
		return nil, 0, 0, errors.New("checksum mismatch")
	}
	exp := int64(binary.LittleEndian.Uint64(buf[:8]))
	t, err := tiles.Decode(buf[8:])
	if err != nil {
		return nil, 0, 0, err
	}
	return t, exp, n + 8, nil
}

func appendRecord(dst []byte, w core.TileWrite) ([]byte, error) {
	body, err := w.Tile.Encode()
	if err != nil {
		return dst, fmt.Errorf("encode tile %s: %w", w.Tile.Key(), err)
	}
	if len(body)+8 > maxRecord {
		return dst, fmt.Errorf("tile %s: %d bytes, more than the %d a record holds", w.Tile.Key(), len(body), maxRecord)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)+8))
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(w.ExpiresMs))
	dst = append(dst, body...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst, nil
}

// insert puts tl into the index; the caller holds mu (or is replaying).
func (s *Store) insert(tl *tiles.Tile, exp, size, nowMs int64) {
	view, entity := tl.View, tl.Entity
	byEntity := s.index[view]
	if byEntity == nil {
		byEntity = map[string]*entry{}
		s.index[view] = byEntity
	}
	e := byEntity[entity]
	if e == nil {
		e = &entry{}
		byEntity[entity] = e
	}
	t := s.compact.Tile(tl)
	// Drop what expired while the entity is at hand.
	kept := e.items[:0]
	for _, it := range e.items {
		if it.exp != 0 && it.exp <= nowMs {
			s.live -= it.size
			s.count--
			continue
		}
		kept = append(kept, it)
	}
	clear(e.items[len(kept):])
	e.items = kept
	// Items are sorted by (resolution, start); find t's place.
	i := len(e.items)
	for i > 0 && after(e.items[i-1].t, t) {
		i--
	}
	expired := exp != 0 && exp <= nowMs
	if i > 0 && same(e.items[i-1].t, t) {
		if expired {
			s.live -= e.items[i-1].size
			s.count--
			e.items = append(e.items[:i-1], e.items[i:]...)
			e.items[len(e.items):cap(e.items)][0] = item{}
			s.dropIfEmpty(view, entity, e)
			return
		}
		s.live += size - e.items[i-1].size
		e.items[i-1] = item{t: t, exp: exp, size: size}
		return
	}
	if expired {
		s.dropIfEmpty(view, entity, e)
		return
	}
	e.items = append(e.items, item{})
	copy(e.items[i+1:], e.items[i:])
	e.items[i] = item{t: t, exp: exp, size: size}
	s.live += size
	s.count++
}

func (s *Store) dropIfEmpty(view, entity string, e *entry) {
	if len(e.items) > 0 {
		return
	}
	delete(s.index[view], entity)
	if len(s.index[view]) == 0 {
		delete(s.index, view)
	}
}

func after(a, b *core.Tile) bool {
	return a.ResolutionMs > b.ResolutionMs || (a.ResolutionMs == b.ResolutionMs && a.StartMs > b.StartMs)
}

func same(a, b *core.Tile) bool { return a.ResolutionMs == b.ResolutionMs && a.StartMs == b.StartMs }

// PutTiles implements core.TileStore.
func (s *Store) PutTiles(ctx context.Context, batch []core.TileWrite) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf []byte
	sizes := make([]int64, len(batch))
	for i, w := range batch {
		before := len(buf)
		var err error
		if buf, err = appendRecord(buf, w); err != nil {
			return err
		}
		sizes[i] = int64(len(buf) - before)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.f == nil {
		return errors.New("tile store is closed")
	}
	if _, err := s.f.Write(buf); err != nil {
		// Leave no partial batch behind: the next write continues at size.
		if terr := s.f.Truncate(s.size); terr != nil {
			err = errors.Join(err, terr)
		}
		if _, serr := s.f.Seek(s.size, io.SeekStart); serr != nil {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("append tiles: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync tile log: %w", err)
	}
	s.size += int64(len(buf))
	now := s.opts.Now()
	nowMs := now.UnixMilli()
	s.mu.Lock()
	for i, w := range batch {
		s.insert(w.Tile, w.ExpiresMs, sizes[i], nowMs)
	}
	if now.Sub(s.lastSweep) >= s.opts.SweepInterval {
		s.sweepLocked(nowMs)
		s.lastSweep = now
	}
	live := s.live
	s.mu.Unlock()
	if s.size >= s.opts.CompactMinBytes && s.size > 2*live {
		if err := s.compactLocked(); err != nil {
			return fmt.Errorf("compact tile log: %w", err)
		}
	}
	return nil
}

func (s *Store) sweepLocked(nowMs int64) {
	for view, byEntity := range s.index {
		for entity, e := range byEntity {
			kept := e.items[:0]
			for _, it := range e.items {
				if it.exp != 0 && it.exp <= nowMs {
					s.live -= it.size
					s.count--
					continue
				}
				kept = append(kept, it)
			}
			clear(e.items[len(kept):])
			e.items = kept
			s.dropIfEmpty(view, entity, e)
		}
	}
}

// compactLocked rewrites the log with only the live tiles; wmu is held, so
// no write interleaves, and readers keep reading the index meanwhile.
func (s *Store) compactLocked() error {
	tmp := filepath.Join(s.dir, LogName+".compact")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	var buf []byte
	s.mu.RLock()
	for view, byEntity := range s.index {
		for entity, e := range byEntity {
			for _, it := range e.items {
				buf, err = appendRecord(buf[:0], core.TileWrite{Tile: it.t.Full(view, entity), ExpiresMs: it.exp})
				if err == nil {
					_, err = w.Write(buf)
				}
				if err != nil {
					s.mu.RUnlock()
					return errors.Join(err, f.Close(), os.Remove(tmp))
				}
				size += int64(len(buf))
			}
		}
	}
	s.mu.RUnlock()
	if err := w.Flush(); err != nil {
		return errors.Join(err, f.Close(), os.Remove(tmp))
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close(), os.Remove(tmp))
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, LogName)); err != nil {
		return errors.Join(err, f.Close(), os.Remove(tmp))
	}
	if err := syncDir(s.dir); err != nil {
		return errors.Join(err, f.Close())
	}
	old := s.f
	s.f, s.size = f, size
	s.opts.Log.Info("tile log compacted", "bytes", size)
	return old.Close()
}

// GetTiles implements core.TileStore.
func (s *Store) GetTiles(_ context.Context, view, entity string, dst []*core.Tile) ([]*core.Tile, error) {
	nowMs := s.opts.Now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.index[view][entity]
	if e == nil {
		return dst, nil
	}
	for _, it := range e.items {
		if it.exp == 0 || it.exp > nowMs {
			dst = append(dst, it.t)
		}
	}
	return dst, nil
}

// StableTiles implements core.StableTiles: GetTiles returns the stored
// tile objects, and a write replaces the object rather than changing it.
func (s *Store) StableTiles() bool { return true }

// Stats are the store's size figures.
type Stats struct {
	Tiles    int
	LiveLog  int64
	LogBytes int64
}

// Stats reports how many tiles are indexed and the log's size.
func (s *Store) Stats() Stats {
	s.wmu.Lock()
	size := s.size
	s.wmu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Tiles: s.count, LiveLog: s.live, LogBytes: size}
}

// Close syncs and closes the log and releases the directory lock.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.f.Sync(), s.f.Close(), s.unlock())
	s.f = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open data-dir: %w", err)
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
