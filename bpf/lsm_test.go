package bpf

import (
	"os"
	"path/filepath"
	"slices"
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
		{"lockdown,capability,landlock", "bpf is not among the active LSMs"},
		{"capability,bpf_other", "bpf is not among the active LSMs"},
		{"", "bpf is not among the active LSMs"},
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
	// Without securityfs the list comes from lsm_list_modules (6.8), else
	// BPF LSM is not trusted: capability is always among them.
	lsmFile = filepath.Join(dir, "absent")
	lsms, err := activeLSMs()
	if err == nil && !slices.Contains(lsms, "capability") {
		t.Errorf("no securityfs: %v, want the kernel's list from lsm_list_modules, capability among them", lsms)
	}
	if err != nil && !strings.Contains(err.Error(), "lsm_list_modules") {
		t.Errorf("no securityfs and no lsm_list_modules: %v, want an error naming both", err)
	}
	if err := lsmActive(); err != nil && !strings.Contains(err.Error(), "cannot tell") && !strings.Contains(err.Error(), "not among") {
		t.Errorf("no securityfs: %v", err)
	}
}
