// Command offline runs the offline service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/offline"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, offline.Command()))
}
