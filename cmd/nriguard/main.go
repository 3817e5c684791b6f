// Command nriguard holds containers (or a single command) to the network
// destinations their labels declare, with eBPF programs on their cgroups.
package main

import (
	"fmt"
	"os"
	"runtime"
)

const usage = `usage: nriguard <command> [arguments]

commands:
  run [--egress RULES] [--mode enforce|audit] [--user USER] -- CMD [ARGS...]
        run CMD in a transient cgroup held to RULES; print events as JSON lines
        on stderr; exit with CMD's status
  list  list the attachments pinned under /sys/fs/bpf/nriguard
  detach ID...
        remove attachments (what a container left behind, say)
  version
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == childCommand {
		// The helper changes this thread's capabilities and then execs on
		// it: keep it the only thread that runs this goroutine.
		runtime.LockOSThread()
		os.Exit(runChild(os.Args[2:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		code = run(args)
	case "list":
		code = list(args)
	case "detach":
		code = detach(args)
	case "version":
		fmt.Println("nriguard", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "nriguard: unknown command %q\n%s", cmd, usage)
		code = 2
	}
	os.Exit(code)
}

var version = "dev"
