// Package resolve turns exec rules, written as paths inside a container,
// into the identities the kernel judges: the (device, inode) of each file.
// Paths are resolved within the container's root with openat2's
// RESOLVE_IN_ROOT, so a symlink in the image (usrmerge's /bin -> usr/bin, or
// a hostile /bin/x -> /../../host) is followed as the container would follow
// it, and never out of the root.
package resolve

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/policy"
)

// MaxFiles bounds what directory rules may cover, so that an attach stays
// quick; a rule over more is refused.
const MaxFiles = 200000

// dynamic loaders run any file given as an argument without exec'ing it, so
// directory rules never allow them (a rule naming one does).
var loaderName = regexp.MustCompile(`^(ld-[^/]*\.so(\.[0-9]+)*|ld64\.so(\.[0-9]+)*|ld\.so(\.[0-9]+)*)$`)

// Exec resolves e inside root (the container's root directory, "/" for the
// host) and returns the table and warnings: rules that match no file.
// key names the label in errors.
func Exec(root, key string, e *policy.Exec) (*policy.ExecTable, []string, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: open the container's root %s: %w", key, root, err)
	}
	defer unix.Close(rootFD)
	r := &resolver{rootFD: rootFD, key: key, best: map[policy.FileID]rank{}}
	for i := range e.Rules {
		rule := &e.Rules[i]
		if err := r.rule(rule); err != nil {
			return nil, r.warnings, err
		}
	}
	files := make(map[policy.FileID]policy.Action, len(r.best))
	for id, rk := range r.best {
		files[id] = rk.action
	}
	return policy.NewExecTable(e.Layer, e.Default, files), r.warnings, nil
}

// rank orders rules that name the same file: a file rule beats a directory
// rule, a deeper directory beats a shallower one, and on a tie deny wins.
type rank struct {
	specificity int
	action      policy.Action
}

const fileRule = 1 << 30

type resolver struct {
	rootFD   int
	key      string
	best     map[policy.FileID]rank
	warnings []string
	files    int
	cur      *policy.ExecRule
}

func (r *resolver) errorf(format string, args ...any) error {
	return &policy.Error{Key: r.key, Pos: r.cur.Pos, Rule: r.cur.Text, Msg: fmt.Sprintf(format, args...)}
}

func (r *resolver) add(st *unix.Stat_t, specificity int) {
	id := policy.FileID{Dev: uint32(unix.Major(st.Dev))<<20 | uint32(unix.Minor(st.Dev)), Ino: st.Ino}
	next := rank{specificity, r.cur.Action}
	if old, ok := r.best[id]; ok {
		if old.specificity > next.specificity || (old.specificity == next.specificity && old.action == policy.Deny) {
			return
		}
	}
	r.best[id] = next
}

// openIn opens p (absolute, as the container sees it) within the root.
func (r *resolver) openIn(p string, flags uint64) (int, error) {
	return unix.Openat2(r.rootFD, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

func (r *resolver) rule(rule *policy.ExecRule) error {
	r.cur = rule
	if !rule.Dir {
		fd, err := r.openIn(rule.Path, unix.O_RDONLY|unix.O_NONBLOCK)
		if errors.Is(err, unix.ENOENT) {
			r.warnings = append(r.warnings, fmt.Sprintf("%s: rule %d %q: %s does not exist in the container: the rule matches nothing", r.key, rule.Pos, rule.Text, rule.Path))
			return nil
		}
		if err != nil {
			return r.errorf("cannot open %s in the container: %v", rule.Path, err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return r.errorf("cannot stat %s: %v", rule.Path, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return r.errorf("%s is a directory: write %s/ for every program below it", rule.Path, rule.Path)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return r.errorf("%s is not a regular file", rule.Path)
		}
		if isScript(fd) {
			return r.errorf("%s is a #! script: a script runs as its interpreter, which is what is judged; name the interpreter instead", rule.Path)
		}
		r.add(&st, fileRule)
		return nil
	}
	fd, err := r.openIn(rule.Path, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		r.warnings = append(r.warnings, fmt.Sprintf("%s: rule %d %q: %s/ does not exist in the container: the rule matches nothing", r.key, rule.Pos, rule.Text, rule.Path))
		return nil
	}
	if err != nil {
		return r.errorf("cannot open directory %s in the container: %v", rule.Path, err)
	}
	depth := strings.Count(strings.Trim(rule.Path, "/"), "/") + 1
	if rule.Path == "/" {
		depth = 0
	}
	return r.walk(fd, rule.Path, depth, 0)
}

// walk adds every executable regular file below the directory open at fd
// (which it closes); symlinks are followed within the root, directories
// reached through symlinks are not walked.
func (r *resolver) walk(fd int, dir string, specificity, level int) error {
	defer unix.Close(fd)
	if level > 64 {
		return r.errorf("%s: directories nested too deep", dir)
	}
	names, err := readDirNames(fd)
	if err != nil {
		return r.errorf("cannot list %s: %v", dir, err)
	}
	for _, name := range names {
		full := path.Join(dir, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone since the listing
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			if err := r.walk(sub, full, specificity, level+1); err != nil {
				return err
			}
		case unix.S_IFLNK, unix.S_IFREG:
			if err := r.file(full, specificity); err != nil {
				return err
			}
		}
	}
	return nil
}

// file adds one path found by a directory rule if it is a program.
func (r *resolver) file(p string, specificity int) error {
	if loaderName.MatchString(path.Base(p)) {
		return nil
	}
	fd, err := r.openIn(p, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil // a dangling link, or unreadable: nothing to run
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 || isScript(fd) {
		return nil
	}
	if r.files++; r.files > MaxFiles {
		return r.errorf("covers more than %d files: name narrower directories", MaxFiles)
	}
	r.add(&st, specificity)
	return nil
}

func isScript(fd int) bool {
	var b [2]byte
	n, _ := unix.Pread(fd, b[:], 0)
	return n == 2 && b[0] == '#' && b[1] == '!'
}

func readDirNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
