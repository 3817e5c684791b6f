package bpf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BPF LSM is trusted only where the kernel lists it among its active LSMs:
// built in but left out of lsm=, its programs load and never run.
func TestLSMActive(t *testing.T) {
	defer func(f string) { lsmFile = f }(lsmFile)
	dir := t.TempDir()
	for _, c := range []struct {
		list, want string // want: "" for active, else a part of the error
	}{
		{"lockdown,capability,landlock,bpf\n", ""},
		{"bpf", ""},
		{"lockdown,capability,landlock", "BPF LSM is not active"},
		{"capability,bpf_other", "BPF LSM is not active"},
		{"", "BPF LSM is not active"},
	} {
		lsmFile = filepath.Join(dir, "lsm")
		if err := os.WriteFile(lsmFile, []byte(c.list), 0o644); err != nil {
			t.Fatal(err)
		}
		err := lsmActive()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q: %v, want %q", c.list, err, c.want)
		}
	}
	lsmFile = filepath.Join(dir, "absent")
	if err := lsmActive(); err == nil || !strings.Contains(err.Error(), "cannot tell") {
		t.Errorf("no list: %v, want an error saying BPF LSM cannot be trusted", err)
	}
}
