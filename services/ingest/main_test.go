package ingest_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/ingest"
)

// subprocessEnv makes the test binary run as the ingest command (the same
// service.Main as cmd/ingest) instead of running tests: the SIGKILL test
// starts it as a child process, so it is killed as a real process is.
const subprocessEnv = "INGEST_TEST_RUN_AS_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(subprocessEnv) == "1" {
		os.Exit(service.Main(os.Args[1:], os.Stderr, ingest.Command()))
	}
	goleak.VerifyTestMain(m,
		// kafka-go's shared default transport keeps pooled broker connections
		// open after a Writer closes; they belong to the library, not to ingest.
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*conn).run"),
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
	)
}
