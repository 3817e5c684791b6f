// Command ngprobe is the e2e's attacker inside containers: the probe the
// kernel tests run (internal/probe), as a static binary in the test image
// (/bin/ngprobe). One result line per operation: "ok", an errno name, ...
package main

import (
	"os"

	"github.com/nriguard/nriguard/internal/probe"
)

func main() { probe.Run(os.Args[1:], os.Stdin, os.Stdout) }
