module github.com/tributary-ml/tributary/tools/layering

go 1.26.0
