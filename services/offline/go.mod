module github.com/tributary-ml/tributary/services/offline

go 1.26.0

replace (
	github.com/tributary-ml/tributary/libs => ../../libs
	github.com/tributary-ml/tributary/proto/gen/go => ../../proto/gen/go
)
