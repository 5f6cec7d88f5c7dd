# Tributary — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES := proto/gen/go libs services/ingest services/featurizer services/featureserver services/modelserver services/metrics services/offline cmd/tributary tools/layering deploy/k8s/check
BIN     := $(CURDIR)/bin
TOOLS   := $(CURDIR)/bin/tools
export PATH := $(TOOLS):$(PATH)

BUF_VERSION             := v1.70.0
PROTOC_GEN_GO_VERSION   := v1.36.12
PROTOC_GEN_GRPC_VERSION := v1.5.1
GHZ_VERSION             := v0.93.0
TEST_TIMEOUT            ?= 12m

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z][a-z-]*:.*## /{printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## run the whole platform in one process on embedded defaults, with a demo workload (Ctrl-C stops)
	go run ./cmd/tributary dev

.PHONY: test
test: ## run every module's tests (PostgreSQL tests skip locally without a server; CI sets CI=true and they must run)
	@set -e; for m in $(MODULES); do echo "=== $$m"; (cd $$m && go test -count=1 -timeout $(TEST_TIMEOUT) ./...); done

.PHONY: test-race
test-race: ## every module's tests under the race detector (about 4x slower than make test)
	@set -e; for m in $(MODULES); do echo "=== $$m"; (cd $$m && go test -race -count=1 -timeout 20m ./...); done

.PHONY: bench
bench: bench-go bench-featureserver bench-offline ## run every benchmark and print the numbers (targets: DESIGN.md §6)

.PHONY: bench-go
bench-go: ## the Go benchmarks of every module (hot paths, ingest vs pg_recvlogical, featurizer, metrics, model eval)
	@set -e; for m in $(MODULES); do echo "=== $$m"; (cd $$m && go test -run '^$$' -bench . -benchmem -timeout 30m ./...); done

.PHONY: bench-featureserver
bench-featureserver: bench-tools ## featureserver under load: p50/p99/rate for 1x50 and 100x50 next to a no-op call, and their maximum
	GHZ=$(TOOLS)/ghz bash bench/featureserver/run.sh

.PHONY: bench-offline
bench-offline: ## training sets vs Feast's get_historical_features on the same spine, values checked identical (installs feast==0.67.0 into a cache venv)
	bash bench/offline/feast_compare.sh

.PHONY: bench-soak
bench-soak: ## memory of the demo (all five services in one process) under its steady load for 10 minutes (DESIGN.md §6; not part of bench)
	bash bench/soak/run.sh

.PHONY: bench-tools
bench-tools:
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/ghz || GOBIN=$(TOOLS) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

.PHONY: build
build: ## build the service binaries and the CLI into bin/
	@mkdir -p $(BIN)
	go build -o $(BIN)/ ./cmd/tributary ./services/ingest/cmd/ingest ./services/featurizer/cmd/featurizer \
		./services/featureserver/cmd/featureserver ./services/modelserver/cmd/modelserver ./services/metrics/cmd/metrics \
		./services/offline/cmd/offline

.PHONY: tools
tools: ## install the pinned protobuf tools (buf, protoc-gen-go, protoc-gen-go-grpc) into bin/tools
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/buf || GOBIN=$(TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@test -x $(TOOLS)/protoc-gen-go || GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(TOOLS)/protoc-gen-go-grpc || GOBIN=$(TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GRPC_VERSION)

.PHONY: proto
proto: tools ## regenerate proto/gen/go from proto/
	cd proto && rm -rf gen/go/tributary gen/go/inference && buf generate

.PHONY: proto-check
proto-check: proto ## fail when the committed generated code is stale
	@git diff --exit-code -- proto/gen/go || { echo "proto/gen/go is stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/gen/go)" || { echo "proto/gen/go has untracked generated files: run 'make proto' and commit"; exit 1; }

.PHONY: sdk-proto
sdk-proto: ## regenerate the Python SDK's protobuf/gRPC code (sdk/python/tributary/_proto) with the pinned grpcio-tools
	@py=$$(scripts/sdk-env.sh) && cd sdk/python && "$$py" gen_proto.py

.PHONY: sdk-proto-check
sdk-proto-check: sdk-proto ## fail when the Python SDK's committed generated code is stale
	@git diff --exit-code -- sdk/python/tributary/_proto || { echo "sdk/python/tributary/_proto is stale: run 'make sdk-proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- sdk/python/tributary/_proto)" || { echo "sdk/python/tributary/_proto has untracked generated files: run 'make sdk-proto' and commit"; exit 1; }

.PHONY: sdk-test
sdk-test: sdk-proto-check ## the Python SDK: venv in TRIBUTARY_CACHE_DIR/sdk-venv, ruff, mypy, pytest against a real tributary dev (needs Python 3.11+, Go)
	@set -e; py=$$(scripts/sdk-env.sh); bin=$$(dirname "$$py"); cd sdk/python; \
	"$$bin/ruff" check .; "$$bin/ruff" format --check .; "$$bin/mypy" tributary tests gen_proto.py; \
	"$$bin/pytest" -v -rs

.PHONY: lint
lint: tools ## gofmt, go vet on every module, each module builds alone, the import layering (tools/layering), buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@set -e; for m in $(MODULES); do (cd $$m && go vet ./...); done
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off go build ./...) || { echo "$$m does not build alone (GOWORK=off)"; exit 1; }; done
	cd tools/layering && go run . -root ../..
	cd proto && buf lint

.PHONY: tidy
tidy: ## go mod tidy in every module
	@set -e; for m in $(MODULES); do (cd $$m && go mod tidy); done

.PHONY: tidy-check
tidy-check: tidy ## fail when go.mod or go.sum is not tidy
	@git diff --exit-code -- '*/go.mod' '*/go.sum' 'go.mod' 'go.sum' || { echo "modules not tidy: run 'make tidy' and commit"; exit 1; }

.PHONY: infra-up
infra-up: ## start real Apache Kafka (127.0.0.1:29092) and Apache Cassandra (CQL 127.0.0.1:9042) from Maven Central in the background (deploy/local/infra.sh)
	deploy/local/infra.sh up

.PHONY: infra-down
infra-down: ## stop the servers of infra-up
	deploy/local/infra.sh down

.PHONY: infra-status
infra-status: ## which servers of infra-up are running
	deploy/local/infra.sh status

.PHONY: test-infra
test-infra: ## the real-server tier on the servers of infra-up: store conformance on Cassandra, Kafka clients, end-to-end and crash tests on Kafka
	deploy/local/test-infra.sh

.PHONY: demo-infra
demo-infra: ## `tributary dev` against the servers of infra-up instead of the embedded broker and store (Ctrl-C stops)
	@eval "$$(deploy/local/infra.sh env)" && deploy/local/infra.sh status && \
	go run ./cmd/tributary dev --kafka-brokers "$$TRIBUTARY_TEST_KAFKA_BROKERS" --scylla-hosts "$$TRIBUTARY_SCYLLA_HOSTS"

.PHONY: up
up: ## start the production-shaped stack with docker compose (needs a Docker engine)
	docker compose up -d --build

.PHONY: down
down: ## stop the docker compose stack and remove its volumes
	docker compose down -v
