// Package archive is the offline store: Kafka records as Parquet files in
// object storage (gocloud.dev/blob: file:// in development and tests,
// s3:// and gs:// in production), one file per partition and offset range:
//
//	<root>/<topic>/date=YYYY-MM-DD/<partition>-<first offset>-<last offset>.parquet
//
// The date is the UTC day of the arrival (Kafka record time) of the file's
// first record; the partition is zero-padded to 5 digits and the offsets to
// 20, so names sort. A file appears whole or not at all (the blob writer's
// Close publishes it), and readers take each offset once even where files
// overlap (a merged file beside the small ones it replaces).
package archive

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	// The drivers of the archive URLs: file://, s3://, gs://.
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
)

// Archive is an open archive root.
type Archive struct {
	url    string
	bucket *blob.Bucket
}

// Open opens the archive at url for reading (and writing); an archive that
// cannot be reached, or a file:// directory that does not exist, is an
// error naming the URL.
func Open(ctx context.Context, url string) (*Archive, error) {
	return open(ctx, url, false)
}

// Create opens the archive at url, creating a file:// directory that does
// not exist yet.
func Create(ctx context.Context, url string) (*Archive, error) {
	return open(ctx, url, true)
}

func open(ctx context.Context, rawURL string, create bool) (*Archive, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", rawURL, err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("archive %q: not a URL (want file:///dir, s3://bucket or gs://bucket)", rawURL)
	}
	if u.Scheme == "file" {
		q := u.Query()
		// Write files next to their final name and rename them (atomic on
		// one file system; the default temporary directory may be
		// another), and write no attribute sidecar files.
		setDefault(q, "no_tmp_dir", "1")
		setDefault(q, "metadata", "skip")
		if create {
			setDefault(q, "create_dir", "1")
		}
		u.RawQuery = q.Encode()
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", rawURL, err)
	}
	ok, err := b.IsAccessible(ctx)
	if err == nil && !ok {
		err = errors.New("not accessible (does the bucket or directory exist?)")
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("archive %q: %w", rawURL, err), b.Close())
	}
	return &Archive{url: rawURL, bucket: b}, nil
}

func setDefault(q url.Values, k, v string) {
	if !q.Has(k) {
		q.Set(k, v)
	}
}

// URL is the archive's URL as given to Open.
func (a *Archive) URL() string { return a.url }

// Close releases the archive.
func (a *Archive) Close() error { return a.bucket.Close() }

// Topics lists the archived topics, sorted.
func (a *Archive) Topics(ctx context.Context) ([]string, error) {
	it := a.bucket.List(&blob.ListOptions{Delimiter: "/"})
	var topics []string
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive %q: list topics: %w", a.url, err)
		}
		if o.IsDir {
			topics = append(topics, strings.TrimSuffix(o.Key, "/"))
		}
	}
	slices.Sort(topics)
	return topics, nil
}

// Files lists a topic's files sorted by partition, first offset and,
// among files starting at the same offset, the longest first.
func (a *Archive) Files(ctx context.Context, topic string) ([]FileInfo, error) {
	return a.list(ctx, topic+"/", Ext)
}

// list lists the archive files under prefix, or, with a suffix other than
// Ext, the keys ending in it (as FileInfo with only Key and Size).
func (a *Archive) list(ctx context.Context, prefix, suffix string) ([]FileInfo, error) {
	it := a.bucket.List(&blob.ListOptions{Prefix: prefix})
	var files []FileInfo
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive %q: list %s: %w", a.url, prefix, err)
		}
		if o.IsDir || !strings.HasSuffix(o.Key, suffix) {
			continue
		}
		if suffix != Ext {
			files = append(files, FileInfo{Key: o.Key, Size: o.Size})
			continue
		}
		if f, ok := ParseKey(o.Key); ok {
			f.Size = o.Size
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(x, y FileInfo) int {
		switch {
		case x.Partition != y.Partition:
			return cmp.Compare(int64(x.Partition), int64(y.Partition))
		case x.First != y.First:
			return cmp.Compare(x.First, y.First)
		default:
			return cmp.Compare(y.Last, x.Last)
		}
	})
	return files, nil
}

// Scan calls fn with topic's rows in (partition, offset) order, each
// offset once even where files overlap. fn must not keep r: it is reused.
// A file that cannot be read is an error naming it.
func (a *Archive) Scan(ctx context.Context, topic string, fn func(r *Row) error) error {
	files, err := a.Files(ctx, topic)
	if err != nil {
		return err
	}
	var (
		part  int32
		next  int64 // the first offset of part not yet yielded
		begun bool
	)
	for _, f := range files {
		if !begun || f.Partition != part {
			part, next, begun = f.Partition, 0, true
		}
		if f.Last < next {
			continue // covered by files already read
		}
		err := a.readFile(ctx, f, func(r *Row) error {
			if r.Offset < next {
				return nil
			}
			next = r.Offset + 1
			return fn(r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ReadFile calls fn with the rows of one file, in file order.
func (a *Archive) ReadFile(ctx context.Context, f FileInfo, fn func(r *Row) error) error {
	return a.readFile(ctx, f, fn)
}

func (a *Archive) readFile(ctx context.Context, f FileInfo, fn func(r *Row) error) error {
	data, err := a.bucket.ReadAll(ctx, f.Key)
	if err != nil {
		return fmt.Errorf("archive %q: read %s: %w", a.url, f.Key, err)
	}
	var cbErr error
	err = DecodeFile(data, func(r *Row) error {
		if r.Partition != f.Partition || r.Offset < f.First || r.Offset > f.Last {
			return fmt.Errorf("row %d/%d is outside the file's name range %d/%d-%d", r.Partition, r.Offset, f.Partition, f.First, f.Last)
		}
		if cbErr = fn(r); cbErr != nil {
			return cbErr
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case cbErr != nil && errors.Is(err, cbErr):
		return err
	}
	return fmt.Errorf("archive %q: file %s: %w", a.url, f.Key, err)
}

// DecodeFile decodes a Parquet file of archive rows, calling fn with each
// row in file order. A file that is not Parquet, lacks the offset,
// partition or arrival_ms column, or breaks the library is an error.
func DecodeFile(data []byte, fn func(r *Row) error) (err error) {
	defer func() {
		// The Parquet library may panic on malformed input; a corrupt file
		// is an error, not a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt parquet: %v", p)
		}
	}()
	// The footer's length comes first: a corrupt one would make the
	// library allocate what it claims (gigabytes) before failing.
	if len(data) < 12 || string(data[:4]) != "PAR1" || string(data[len(data)-4:]) != "PAR1" {
		return errors.New("not a parquet file: no PAR1 magic at both ends")
	}
	if n := binary.LittleEndian.Uint32(data[len(data)-8:]); int64(n) > int64(len(data)-12) {
		return fmt.Errorf("not a parquet file: footer length %d exceeds the file", n)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("not a parquet file: %w", err)
	}
	for _, col := range []string{"partition", "offset", "arrival_ms"} {
		if _, ok := pf.Schema().Lookup(col); !ok {
			return fmt.Errorf("no %q column: not an archive file", col)
		}
	}
	rd := parquet.NewGenericReader[Row](pf)
	defer func() { err = errors.Join(err, rd.Close()) }()
	buf := make([]Row, 256)
	for {
		n, rerr := rd.Read(buf)
		for i := range n {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read rows: %w", rerr)
		}
		if n == 0 {
			return errors.New("read rows: no progress")
		}
	}
}

// WriteFile writes rows (one partition of one topic, in offset order) as
// one file and returns it. The file appears only when complete: the blob
// writer publishes it on Close.
func (a *Archive) WriteFile(ctx context.Context, rows []Row) (FileInfo, error) {
	if len(rows) == 0 {
		return FileInfo{}, errors.New("write archive file: no rows")
	}
	first, last := rows[0], rows[len(rows)-1]
	for i := 1; i < len(rows); i++ {
		if rows[i].Topic != first.Topic || rows[i].Partition != first.Partition || rows[i].Offset <= rows[i-1].Offset {
			return FileInfo{}, fmt.Errorf("write archive file: row %d (%s/%d@%d) breaks %s/%d's offset order", i, rows[i].Topic, rows[i].Partition, rows[i].Offset, first.Topic, first.Partition)
		}
	}
	key := FileKey(first.Topic, first.Partition, first.Offset, last.Offset, first.ArrivalMs)
	f, _ := ParseKey(key)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // an unfinished write is abandoned, never published
	w, err := a.bucket.NewWriter(ctx, key, &blob.WriterOptions{ContentType: "application/vnd.apache.parquet"})
	if err != nil {
		return FileInfo{}, fmt.Errorf("archive %q: write %s: %w", a.url, key, err)
	}
	cw := &countingWriter{w: w}
	if err := Encode(cw, rows); err != nil {
		cancel()
		return FileInfo{}, errors.Join(fmt.Errorf("archive %q: write %s: %w", a.url, key, err), w.Close())
	}
	if err := w.Close(); err != nil {
		return FileInfo{}, fmt.Errorf("archive %q: write %s: %w", a.url, key, err)
	}
	f.Size = cw.n
	return f, nil
}

// Encode writes rows as one Parquet file (zstd, one row group per 64k rows).
func Encode(w io.Writer, rows []Row) error {
	pw := parquet.NewGenericWriter[Row](w,
		parquet.Compression(&zstd.Codec{Level: zstd.SpeedDefault}),
		parquet.MaxRowsPerRowGroup(64<<10),
		parquet.CreatedBy("tributary-offline", "", ""),
	)
	if _, err := pw.Write(rows); err != nil {
		return err
	}
	return pw.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Delete removes a file (compaction, retention). A file already gone is
// not an error.
func (a *Archive) Delete(ctx context.Context, key string) error {
	if err := a.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("archive %q: delete %s: %w", a.url, key, err)
	}
	return nil
}

// RemoveTemporary deletes what unfinished writes of a killed writer left
// under topic (file:// writes through <name>.parquet.<n>.tmp). Only the
// topic's single writer may call it.
func (a *Archive) RemoveTemporary(ctx context.Context, topic string) error {
	tmps, err := a.list(ctx, topic+"/", ".tmp")
	if err != nil {
		return err
	}
	for _, t := range tmps {
		if err := a.Delete(ctx, t.Key); err != nil {
			return err
		}
	}
	return nil
}
