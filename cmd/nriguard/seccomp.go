package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/nriguard/nriguard/seccomp"
)

// runSeccomp: nriguard seccomp [--from PROFILE] — print a seccomp profile
// (the OCI hook's runtimes' JSON form) that keeps sockets to the families
// nriguard's hooks judge: PROFILE restricted, or, without one, a profile
// that allows every other call. For podman: --security-opt seccomp=FILE.
func runSeccomp(args []string) int {
	fs := flag.NewFlagSet("seccomp", flag.ContinueOnError)
	from := fs.String("from", "", "a seccomp profile to restrict (e.g. /usr/share/containers/seccomp.json)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: nriguard seccomp [--from PROFILE]")
		return 2
	}
	var out []byte
	var err error
	if *from != "" {
		var data []byte
		if data, err = os.ReadFile(*from); err == nil {
			out, err = seccomp.RestrictJSON(data)
		}
	} else {
		out, err = json.MarshalIndent(seccomp.Restrict(nil), "", "  ")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard seccomp:", err)
		return 1
	}
	fmt.Println(string(out))
	return 0
}
