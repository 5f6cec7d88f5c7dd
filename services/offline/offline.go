// Package offline is the offline service: it archives source history as
// Parquet in object storage, computes point-in-time training sets and skew
// reports from it, and backfills tiles.
package offline

// Name is the service name in logs and metrics.
const Name = "offline"

// Usage describes the service in one line.
const Usage = "archive of source history, point-in-time training sets, skew report, backfill"
