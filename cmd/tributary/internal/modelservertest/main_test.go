package modelservertest_test

import (
	"testing"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// TestMain fails the package when a test leaves goroutines behind (the
// service, its prediction log writer, feature client, watchers).
func TestMain(m *testing.M) {
	testutil.VerifyNoLeaks(m)
}
