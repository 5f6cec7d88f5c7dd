module github.com/tributary-ml/tributary/services/offline

go 1.26.0

replace (
	github.com/tributary-ml/tributary/libs => ../../libs
	github.com/tributary-ml/tributary/proto/gen/go => ../../proto/gen/go
)

require (
	github.com/parquet-go/parquet-go v0.32.0
	github.com/tributary-ml/tributary/libs v0.0.0-00010101000000-000000000000
)

require (
	github.com/andybalholm/brotli v1.1.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/parquet-go/bitpack v1.0.0 // indirect
	github.com/parquet-go/jsonlite v1.0.0 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twpayne/go-geom v1.6.1 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
