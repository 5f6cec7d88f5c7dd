package ingest_test

import (
	"os"
	"testing"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/libs/testutil"
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
	testutil.VerifyNoLeaks(m)
}
