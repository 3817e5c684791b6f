// Package resolve turns exec rules, written as paths inside a container,
// into the identities the kernel judges: the (device, inode) of each file
// as the exec hook reads them (file->f_inode: i_sb->s_dev, i_ino), and the
// file's change time, which binds the identity to the content it had.
// Paths are resolved within the container's root with openat2's
// RESOLVE_IN_ROOT, so a symlink in the image (usrmerge's /bin -> usr/bin, or
// a hostile /bin/x -> /../../host) is followed as the container would follow
// it, and never out of the root.
//
// stat(2) is not asked for the device: on an overlay whose layers live on
// another filesystem it reports the layer's device, while the kernel runs
// the overlay's inode. The open file's mount (its fdinfo) names the
// superblock the kernel will see, and the mount table its device.
package resolve

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
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
	r, err := newResolver(root, key)
	if err != nil {
		return nil, nil, err
	}
	defer r.close()
	for i := range e.Rules {
		if err := r.rule(&e.Rules[i]); err != nil {
			return nil, r.warnings, err
		}
	}
	files := make(map[policy.FileID]policy.Action, len(r.cands))
	rules := map[policy.FileID]int{}
	conds := map[policy.FileID][]policy.CondAction{}
	for id, cs := range r.cands {
		if a, pos, ok := decideFile(cs, nil); ok {
			files[id], rules[id] = a, pos
		}
		if c, err := r.condActions(id, cs, e.Default); err != nil {
			return nil, r.warnings, err
		} else if len(c) > 0 {
			conds[id] = c
			if _, ok := files[id]; !ok {
				files[id] = e.Default // named by qualified rules only: the default for the rest
			}
		}
	}
	t := policy.NewExecTable(e.Layer, e.Default, files, r.stamps)
	t.SetConds(e.Layer, conds)
	t.Rules = rules
	for id := range files {
		if w, ok := r.weak[id]; ok {
			if t.Weak == nil {
				t.Weak = map[policy.FileID]policy.Weakness{}
			}
			t.Weak[id] = w
		}
	}
	return t, r.warnings, nil
}

// Programs resolves exe= patterns (Qualifiers.ExePattern) inside root as
// exec rules would resolve them: for every file one names, the patterns
// that name it, its stamp, and its weakness if it has one.
func Programs(root, key string, patterns []string) (byFile map[policy.FileID][]string, stamps map[policy.FileID]policy.Stamp,
	weak map[policy.FileID]policy.Weakness, warnings []string, err error) {
	r, err := newResolver(root, key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer r.close()
	out := map[policy.FileID][]string{}
	for _, pat := range patterns {
		rule := &policy.ExecRule{Action: policy.Allow, Path: path.Clean(pat), Dir: strings.HasSuffix(pat, "/") || pat == "/", Text: "exe=" + pat}
		r.cands = map[policy.FileID][]cand{}
		if err := r.rule(rule); err != nil {
			return nil, nil, nil, r.warnings, err
		}
		for id := range r.cands {
			out[id] = append(out[id], pat)
		}
	}
	return out, r.stamps, r.weak, r.warnings, nil
}

// cand is a rule that names a file: how specifically (a file rule beats a
// directory rule, a deeper directory beats a shallower one).
type cand struct {
	specificity int
	rule        *policy.ExecRule
}

const fileRule = 1 << 30

// decideFile is the rule that decides for who among a file's candidates: the
// most specific; on a tie, one about who (qualified) beats one about
// everyone, then deny beats allow. who nil: no qualifier holds. ok false: no
// candidate applies.
func decideFile(cs []cand, who *policy.Principal) (policy.Action, int, bool) {
	best := -1
	var bestRank [3]int
	for i, c := range cs {
		if !c.rule.Quals.Holds(who) {
			continue
		}
		rank := [3]int{c.specificity, b2i(c.rule.Quals.Any()), b2i(c.rule.Action == policy.Deny)}
		if best < 0 || slices.Compare(rank[:], bestRank[:]) > 0 {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return policy.NoAction, 0, false
	}
	return cs[best].rule.Action, cs[best].rule.Pos, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// condActions is what a file's qualified candidates decide, as cells of
// users and groups where the decision differs from that for anyone else.
func (r *resolver) condActions(id policy.FileID, cs []cand, def policy.Action) ([]policy.CondAction, error) {
	var uids, gids []policy.IDRange
	for _, c := range cs {
		uids, gids = append(uids, c.rule.Quals.UIDs...), append(gids, c.rule.Quals.GIDs...)
	}
	if len(uids)+len(gids) == 0 {
		return nil, nil
	}
	decide := func(who *policy.Principal) (policy.Action, int) {
		if a, pos, ok := decideFile(cs, who); ok {
			return a, pos
		}
		return def, 0
	}
	base, _ := decide(nil)
	var out []policy.CondAction
	for _, u := range policy.Cells(uids) {
		for _, g := range policy.Cells(gids) {
			if a, pos := decide(&policy.Principal{UID: u.Lo, GID: g.Lo}); a != base {
				out = append(out, policy.CondAction{UIDs: u, GIDs: g, Action: a, Rule: pos})
			}
		}
	}
	if len(out) > policy.MaxConds {
		return nil, fmt.Errorf("%s: the uid= and gid= rules that name %d:%d cut its users and groups into %d cases: at most %d",
			r.key, id.Dev, id.Ino, len(out), policy.MaxConds)
	}
	return out, nil
}

type resolver struct {
	rootFD   int
	key      string
	cands    map[policy.FileID][]cand
	stamps   map[policy.FileID]policy.Stamp
	weak     map[policy.FileID]policy.Weakness
	mounts   map[int]uint32 // mount id -> device, kernel encoding
	warnings []string
	files    int
	cur      *policy.ExecRule
}

func newResolver(root, key string) (*resolver, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: open the container's root %s: %w", key, root, err)
	}
	mounts, err := readMounts(mountInfoOf(root))
	if err != nil {
		unix.Close(rootFD)
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return &resolver{rootFD: rootFD, key: key, cands: map[policy.FileID][]cand{}, stamps: map[policy.FileID]policy.Stamp{},
		weak: map[policy.FileID]policy.Weakness{}, mounts: mounts}, nil
}

func (r *resolver) close() { unix.Close(r.rootFD) }

func (r *resolver) errorf(format string, args ...any) error {
	return &policy.Error{Key: r.key, Pos: r.cur.Pos, Rule: r.cur.Text, Msg: fmt.Sprintf(format, args...)}
}

// add records the open file fd (at path p) for the current rule.
func (r *resolver) add(fd int, p string, specificity int) error {
	id, stamp, err := r.identify(fd)
	if err != nil {
		return r.errorf("%v", err)
	}
	r.stamps[id] = stamp
	if w := weakness(fd, stamp); w != "" {
		r.weak[id] = policy.Weakness{Path: p, Why: w}
	}
	r.cands[id] = append(r.cands[id], cand{specificity, r.cur})
	return nil
}

// identify returns what the exec hook will see of the file open at fd: the
// inode number and superblock device of the inode the open file has (from
// its fdinfo and the mount table), and its change time.
func (r *resolver) identify(fd int) (policy.FileID, policy.Stamp, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return policy.FileID{}, policy.Stamp{}, err
	}
	mnt, ino := -1, uint64(0)
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "mnt_id":
			mnt, _ = strconv.Atoi(v)
		case "ino":
			ino, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	dev, ok := r.mounts[mnt]
	if !ok || ino == 0 {
		return policy.FileID{}, policy.Stamp{}, fmt.Errorf("cannot tell the identity of the file: mount %d, inode %d", mnt, ino)
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_CTIME, &stx); err != nil {
		return policy.FileID{}, policy.Stamp{}, err
	}
	return policy.FileID{Dev: dev, Ino: ino}, policy.Stamp{Sec: stx.Ctime.Sec, Nsec: stx.Ctime.Nsec}, nil
}

// Filesystems whose files' change times do not follow their content.
const (
	tmpfsMagic     = 0x01021994
	ramfsMagic     = 0x858458f6
	hugetlbfsMagic = 0x958458f6
	overlayMagic   = 0x794c7630
)

// weakness says why a file's change time may not follow its content, if it
// may not: the exec hook would then take new content for the file a rule
// named (docs/policy.md, "What the program is").
func weakness(fd int, stamp policy.Stamp) string {
	var fs unix.Statfs_t
	if unix.Fstatfs(fd, &fs) != nil {
		return ""
	}
	switch uint32(fs.Type) {
	case tmpfsMagic, ramfsMagic, hugetlbfsMagic:
		return policy.WeakShm
	case overlayMagic:
		return policy.WeakOverlay
	}
	return ""
}

// mountInfoOf is the mount table in which root's mounts are: a process's
// own when root is /proc/<pid>/root (or a directory below it: a rootfs
// before its pivot), else this one's.
func mountInfoOf(root string) string {
	if rest, ok := strings.CutPrefix(root, "/proc/"); ok {
		if pid, tail, _ := strings.Cut(rest, "/"); tail == "root" || strings.HasPrefix(tail, "root/") {
			if _, err := strconv.Atoi(pid); err == nil {
				return "/proc/" + pid + "/mountinfo"
			}
		}
	}
	return "/proc/self/mountinfo"
}

// readMounts maps mount ids to the device of their superblock.
func readMounts(path string) (map[int]uint32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	out := map[int]uint32{}
	for _, line := range strings.Split(string(data), "\n") {
		// id parent major:minor root mountpoint ...
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		maj, min, _ := strings.Cut(f[2], ":")
		ma, err2 := strconv.ParseUint(maj, 10, 32)
		mi, err3 := strconv.ParseUint(min, 10, 32)
		if err1 == nil && err2 == nil && err3 == nil {
			out[id] = uint32(ma)<<20 | uint32(mi)
		}
	}
	return out, nil
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
		return r.add(fd, rule.Path, fileRule)
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
	return r.add(fd, p, specificity)
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
