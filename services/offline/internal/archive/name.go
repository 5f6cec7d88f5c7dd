package archive

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// File names: <topic>/date=YYYY-MM-DD/<partition>-<first>-<last>.parquet
// with the partition zero-padded to 5 digits and both offsets to 20 (every
// int64 fits), so names sort by partition, then offset, as text.
const (
	partitionDigits = 5
	offsetDigits    = 20
	// Ext is the extension of archive files; other keys are ignored.
	Ext = ".parquet"
	// ImportPartition is the partition of rows imported with `tributary
	// import` (Kafka partitions are never negative). Imported files are
	// named import-<first>-<last>.parquet and their offsets count from 0
	// per topic, so they never collide with Kafka's.
	ImportPartition = -1
	importPrefix    = "import"
)

// FileInfo describes one archive file, from its name.
type FileInfo struct {
	// Key is the file's key in the bucket (relative to the archive root).
	Key       string
	Topic     string
	Date      string // YYYY-MM-DD, UTC, of the first record's arrival
	Partition int32
	First     int64 // offset of the first row
	Last      int64 // offset of the last row
	Size      int64
}

// FileKey is the key of the file holding topic's partition from first to
// last, whose first record arrived at arrivalMs.
func FileKey(topic string, partition int32, first, last, arrivalMs int64) string {
	date := time.UnixMilli(arrivalMs).UTC().Format(time.DateOnly)
	p := fmt.Sprintf("%0*d", partitionDigits, partition)
	if partition == ImportPartition {
		p = importPrefix
	}
	return fmt.Sprintf("%s/date=%s/%s-%0*d-%0*d%s", topic, date, p, offsetDigits, first, offsetDigits, last, Ext)
}

// ParseKey reads a file's key; ok is false for keys that are not archive
// files (temporary files of an unfinished write, other objects).
func ParseKey(key string) (FileInfo, bool) {
	rest, ok := strings.CutSuffix(key, Ext)
	if !ok {
		return FileInfo{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" {
		return FileInfo{}, false
	}
	date, ok := strings.CutPrefix(parts[1], "date=")
	if !ok {
		return FileInfo{}, false
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return FileInfo{}, false
	}
	fields := strings.Split(parts[2], "-")
	if len(fields) != 3 {
		return FileInfo{}, false
	}
	var p int64
	if fields[0] == importPrefix {
		p = ImportPartition
	} else {
		var err error
		if p, err = strconv.ParseInt(fields[0], 10, 32); err != nil || p < 0 {
			return FileInfo{}, false
		}
	}
	first, err1 := strconv.ParseInt(fields[1], 10, 64)
	last, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return FileInfo{}, false
	}
	return FileInfo{Key: key, Topic: parts[0], Date: date, Partition: int32(p), First: first, Last: last}, true
}
