// Package cgroup finds the cgroup v2 hierarchy and manages the directories
// nriguard attaches to: its own transient ones (nriguard run) and the ones a
// runtime made for a container.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Root returns where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a
// pure v2 host, /sys/fs/cgroup/unified on a hybrid one, else the first
// cgroup2 mount in the mount table.
func Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if isV2(p) {
			return p, nil
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		left, right, ok := strings.Cut(s.Text(), " - ")
		if !ok || !strings.HasPrefix(right, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(left); len(fields) >= 5 {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (looked at /sys/fs/cgroup, /sys/fs/cgroup/unified and /proc/self/mountinfo)")
}

func isV2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// ID returns the cgroup id of a v2 directory: what bpf_get_current_cgroup_id
// reports for processes in it.
func ID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// OfPid returns the cgroup v2 directory of a process.
func OfPid(pid int) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(root, rel), nil
		}
	}
	return "", fmt.Errorf("process %d is in no cgroup v2", pid)
}

// Procs lists the processes directly in a cgroup.
func Procs(path string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Move puts a process into a cgroup (0 for the caller).
func Move(path string, pid int) error {
	return os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// Remove kills whatever still runs in a cgroup and its children and removes
// the directories, deepest first. A cgroup that is already gone is fine.
func Remove(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var dirs []string
	filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			killAll(dirs[i])
			err := unix.Rmdir(dirs[i])
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

func killAll(dir string) {
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	pids, _ := Procs(dir)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// FromPath finds a container's cgroup v2 directory from the OCI spec's
// linux.cgroupsPath as runtimes write it: a path under the hierarchy
// (cgroupfs driver), or systemd's "slice:prefix:name".
func FromPath(cgroupsPath string) (string, error) {
	rel, err := relPath(cgroupsPath)
	if err != nil {
		return "", err
	}
	root, err := Root()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, rel)
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// relPath turns a cgroupsPath into a path under the hierarchy's root.
func relPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("no cgroups path")
	}
	if strings.HasPrefix(p, "/") {
		return filepath.Clean(p), nil
	}
	slice, prefix, name := "", "", ""
	if f := strings.Split(p, ":"); len(f) == 3 {
		slice, prefix, name = f[0], f[1], f[2]
	} else {
		return "", fmt.Errorf("cgroups path %q: expected /a/path or slice:prefix:name", p)
	}
	dir := "/"
	if slice != "" && slice != "-.slice" {
		base := strings.TrimSuffix(slice, ".slice")
		parts := strings.Split(base, "-")
		for i := range parts {
			dir = filepath.Join(dir, strings.Join(parts[:i+1], "-")+".slice")
		}
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") && !strings.HasSuffix(name, ".scope") {
		unit = name + ".scope"
		if prefix != "" {
			unit = prefix + "-" + unit
		}
	}
	return filepath.Join(dir, unit), nil
}
