package bpf

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

// DefaultPinRoot is where every attachment pins its links and maps, one
// directory per id: /sys/fs/bpf/nriguard/<id>/.
const DefaultPinRoot = "/sys/fs/bpf/nriguard"

// Spec says what to hold one cgroup to.
type Spec struct {
	ID     string            // the pin directory's name: a container id, or run-<pid>
	Cgroup string            // the cgroup v2 directory
	Egress *policy.Compiled  // nil: no egress policy
	Exec   *policy.ExecTable // nil: no exec policy
	Mode   policy.Mode
	Owner  Owner
}

// EventMaps are the ring buffer the programs write events to and the
// counters of events it had no room for.
type EventMaps struct {
	Ring, Lost *ebpf.Map
	// The host's exec rule table and the cgroup whose lost exec events it
	// counts, set by Attach, read by EventReader.Lost.
	execTable  *ebpf.Map
	execCgroup uint64
}

// EventRingSize is the size of every event ring buffer: one shared by
// several attachments must have it too.
const EventRingSize = 1 << 20

// NewEventMaps makes a ring buffer and lost counter to share between
// attachments (Options.Events).
func NewEventMaps() (*EventMaps, error) {
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_events", Type: ebpf.RingBuf, MaxEntries: EventRingSize})
	if err != nil {
		return nil, err
	}
	lost, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		ring.Close()
		return nil, err
	}
	return &EventMaps{Ring: ring, Lost: lost}, nil
}

// Options tune an attach.
type Options struct {
	PinRoot string // DefaultPinRoot when empty
	// Events, when set, is shared by every attachment (one reader for all
	// containers); otherwise each attachment has its own.
	Events *EventMaps
	// ExecBackend picks the exec backend when this pin root has no exec
	// program yet (BackendLSM or BackendKill); empty: ExecBackend().
	ExecBackend string
	// Pool, when set, supplies egress programs loaded ahead of need (it
	// must have been made with the same Events).
	Pool *Pool
}

func (o *Options) pool() *Pool {
	if o == nil {
		return nil
	}
	return o.Pool
}

func (o *Options) events() *EventMaps {
	if o == nil {
		return nil
	}
	return o.Events
}

func (o *Options) execBackend() string {
	if o == nil {
		return ""
	}
	return o.ExecBackend
}

func (o *Options) pinRoot() string {
	if o == nil || o.PinRoot == "" {
		return DefaultPinRoot
	}
	return o.PinRoot
}

// Attachment is one cgroup's programs, links and maps. The pins keep them in
// force after the process that attached them exits.
type Attachment struct {
	ID, Dir  string
	CgroupID uint64 // of the cgroup it holds: events name it as policy_cgroup
	Events   EventMaps
	root     string
	objs     []ebpfCloser
	links    []link.Link
	egress   *egressSet // its egress programs and maps, while this process holds them
}

type ebpfCloser interface{ Close() error }

// pinned names under the attachment's directory, and what attaches where.
var egressLinks = []struct {
	name   string
	attach ebpf.AttachType
	prog   string
}{
	// sock_create first: from then on no unjudgeable socket can be made.
	{"link_sock_create", ebpf.AttachCGroupInetSockCreate, egressProgNgSockCreate},
	{"link_connect4", ebpf.AttachCGroupInet4Connect, egressProgNgConnect4},
	{"link_connect6", ebpf.AttachCGroupInet6Connect, egressProgNgConnect6},
	{"link_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, egressProgNgSendmsg4},
	{"link_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, egressProgNgSendmsg6},
}

// The meta map holds what detach and reconciliation need to know of an
// attachment: what it enforces (a digest), where, and which parts it has.
const metaPin = "meta"

type meta struct {
	Digest [32]byte
	Cgroup uint64
	Parts  uint64
	Owner  Owner
}

// Owner says which kind of nriguard process made an attachment, so that
// each reconciles only its own: the NRI plugin must not remove what an OCI
// hook attached to a podman container it never hears of.
type Owner uint64

const (
	OwnerRun  Owner = 1 // nriguard run
	OwnerNRI  Owner = 2 // the NRI plugin
	OwnerHook Owner = 3 // the OCI hook
)

const (
	partEgress = 1 << iota
	partExec
)

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

var egressSpec = sync.OnceValues(loadEgress)

// Attach holds spec.Cgroup to spec's policy and pins everything under
// <PinRoot>/<ID>. Attaching the same spec twice is a no-op; attaching a
// different policy for the same id replaces the old one without a gap (both
// are in force for a moment, and a flow must pass both). A failure leaves
// nothing attached or pinned.
func Attach(spec Spec, opts *Options) (*Attachment, error) {
	if !validID.MatchString(spec.ID) || strings.HasPrefix(spec.ID, "tmp-") {
		return nil, fmt.Errorf("attach: invalid id %q: expected 1-200 letters, digits, '_' or '-'", spec.ID)
	}
	if spec.Egress == nil && spec.Exec == nil {
		return nil, fmt.Errorf("attach %s: nothing to attach (no egress or exec policy)", spec.ID)
	}
	root := opts.pinRoot()
	if err := ensurePinRoot(root); err != nil {
		return nil, err
	}
	cgid, err := cgroup.ID(spec.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	m := meta{Digest: spec.digest(cgid), Cgroup: cgid, Owner: spec.Owner}
	if spec.Egress != nil {
		m.Parts |= partEgress
	}
	if spec.Exec != nil {
		m.Parts |= partExec
	}
	dir := filepath.Join(root, spec.ID)
	old, oldErr := readMeta(dir)
	if oldErr == nil && old == m && complete(dir, m.Parts) {
		return &Attachment{ID: spec.ID, Dir: dir, CgroupID: cgid, root: root}, nil
	}

	a := &Attachment{ID: spec.ID, Dir: dir, CgroupID: cgid, root: root}
	tmp := filepath.Join(root, fmt.Sprintf("tmp-%d-%s-%s", os.Getpid(), randomHex(), spec.ID))
	var rules *ebpf.Map
	published := false
	ok := false
	defer func() {
		if !ok {
			if published && (oldErr != nil || old.Cgroup != cgid || old.Parts&partExec == 0) {
				withHostLock(func() error { return withdrawExec(root, cgid, rules, false) })
			}
			a.close()
			os.RemoveAll(tmp)
		}
	}()
	fail := func(err error) (*Attachment, error) {
		return nil, fmt.Errorf("attach %s to %s: %w", spec.ID, spec.Cgroup, err)
	}
	if spec.Egress != nil {
		if err := a.loadEgress(spec, cgid, opts); err != nil {
			return fail(err)
		}
	} else if err := a.ownEvents(opts); err != nil {
		return fail(err)
	}
	if spec.Exec != nil {
		if rules, err = newExecRules(spec.Exec, spec.Mode); err != nil {
			return fail(err)
		}
		a.objs = append(a.objs, rules)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	if spec.Egress != nil {
		if err := a.attachEgress(spec, tmp); err != nil {
			return fail(err)
		}
	}
	if rules != nil {
		if err := rules.Pin(filepath.Join(tmp, execRulesPin)); err != nil {
			return fail(err)
		}
		var oldRules *ebpf.Map
		if oldErr == nil && old.Parts&partExec != 0 && old.Cgroup == cgid {
			if oldRules, err = ebpf.LoadPinnedMap(filepath.Join(dir, execRulesPin), nil); err == nil {
				defer oldRules.Close()
			}
		}
		err := withHostLock(func() error {
			table, err := publishExec(root, opts.execBackend(), cgid, rules, oldRules, spec.Exec.Default, spec.Mode, a.Events.Ring)
			if err == nil {
				a.objs = append(a.objs, table)
				a.Events.execTable, a.Events.execCgroup = table, cgid
			}
			return err
		})
		if err != nil {
			return fail(err)
		}
		published = true
	}
	if err := a.pinMeta(tmp, m); err != nil {
		return fail(err)
	}
	// The new policy is in force: now retire the old one and take the name.
	if oldErr == nil && old.Parts&partExec != 0 && (spec.Exec == nil || old.Cgroup != cgid) {
		withdrawOld(root, dir, old.Cgroup, false)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fail(fmt.Errorf("replace %s: %w", dir, err))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fail(err)
	}
	ok = true
	return a, nil
}

const execRulesPin = "map_exec_rules"

// withdrawOld takes the exec rules pinned in dir for cgid out of the host
// table.
func withdrawOld(root, dir string, cgid uint64, keep bool) error {
	rec, err := ebpf.LoadPinnedMap(filepath.Join(dir, execRulesPin), nil)
	if err == nil {
		defer rec.Close()
	} else {
		rec = nil
	}
	return withHostLock(func() error { return withdrawExec(root, cgid, rec, keep) })
}

// ownEvents gives an exec-only attachment its event ring and lost counter.
func (a *Attachment) ownEvents(opts *Options) error {
	if opts != nil && opts.Events != nil {
		a.Events = *opts.Events
		return nil
	}
	ev, err := NewEventMaps()
	if err != nil {
		return err
	}
	a.objs = append(a.objs, ev.Ring, ev.Lost)
	a.Events = *ev
	return nil
}

func (a *Attachment) loadEgress(spec Spec, cgid uint64, opts *Options) error {
	c := spec.Egress
	var set *egressSet
	if p := opts.pool(); p != nil && p.fits(opts.events(), c) {
		set = p.take()
	}
	if set == nil {
		var err error
		if set, err = loadEgressSet(opts.events(), len(c.V4), len(c.V6), len(c.Ports)); err != nil {
			return err
		}
	}
	a.objs = append(a.objs, set)
	a.egress = set
	a.Events = EventMaps{Ring: set.events, Lost: set.lost}
	// The programs read these from the first flow on: set them before the
	// programs are attached.
	if err := set.setGlobals(spec.Mode, cgid); err != nil {
		return err
	}
	return fillEgress(set, c)
}

// egressSet is one copy of the egress programs and the maps they use.
type egressSet struct {
	progs                            map[string]*ebpf.Program // by link pin name
	v4, v6, ports, bss, events, lost *ebpf.Map
}

func (s *egressSet) Close() error {
	for _, p := range s.progs {
		p.Close()
	}
	for _, m := range []*ebpf.Map{s.v4, s.v6, s.ports, s.bss, s.events, s.lost} {
		if m != nil {
			m.Close()
		}
	}
	return nil
}

// setGlobals writes the programs' audit and policy_cgroup (.bss): a set
// loaded ahead, or used before by another container, learns whom it serves.
func (s *egressSet) setGlobals(mode policy.Mode, cgid uint64) error {
	cs, err := egressSpec()
	if err != nil {
		return err
	}
	buf := make([]byte, cs.Maps[".bss"].ValueSize)
	binary.NativeEndian.PutUint32(buf[cs.Variables[egressVarAudit].Offset:], uint32(mode))
	binary.NativeEndian.PutUint64(buf[cs.Variables[egressVarPolicyCgroup].Offset:], cgid)
	if err := s.bss.Put(uint32(0), buf); err != nil {
		return fmt.Errorf("set the egress programs' mode and cgroup: %w", err)
	}
	return nil
}

// loadEgressSet loads one copy of the egress programs, with tries that hold
// up to the given numbers of entries, writing to ev (nil: its own ring).
func loadEgressSet(ev *EventMaps, v4, v6, ports int) (*egressSet, error) {
	cs, err := egressSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	cs.Maps[egressMapV4Prefixes].MaxEntries = uint32(max(1, v4))
	cs.Maps[egressMapV6Prefixes].MaxEntries = uint32(max(1, v6))
	cs.Maps[egressMapPorts].MaxEntries = uint32(max(1, ports))
	co := ebpf.CollectionOptions{}
	if ev != nil {
		// A shared ring buffer is sized by whoever made it.
		cs.Maps[egressMapEvents].MaxEntries = ev.Ring.MaxEntries()
		co.MapReplacements = map[string]*ebpf.Map{egressMapEvents: ev.Ring, egressMapLostEvents: ev.Lost}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, co)
	if err != nil {
		return nil, fmt.Errorf("load egress programs: %w", err)
	}
	defer coll.Close()
	s := &egressSet{progs: map[string]*ebpf.Program{},
		v4: coll.DetachMap(egressMapV4Prefixes), v6: coll.DetachMap(egressMapV6Prefixes), ports: coll.DetachMap(egressMapPorts),
		bss: coll.DetachMap(".bss"), events: coll.DetachMap(egressMapEvents), lost: coll.DetachMap(egressMapLostEvents)}
	for _, l := range egressLinks {
		s.progs[l.name] = coll.DetachProgram(l.prog)
	}
	return s, nil
}

// fillEgress writes the compiled tables into the tries.
func fillEgress(objs *egressSet, c *policy.Compiled) error {
	k4 := make([]egressV4Key, len(c.V4))
	v4 := make([]uint32, len(c.V4))
	for i, pc := range c.V4 {
		k4[i] = egressV4Key{Prefixlen: uint32(pc.Prefix.Bits()), Addr: pc.Prefix.Addr().As4()}
		v4[i] = pc.Class
	}
	k6 := make([]egressV6Key, len(c.V6))
	v6 := make([]uint32, len(c.V6))
	for i, pc := range c.V6 {
		k6[i] = egressV6Key{Prefixlen: uint32(pc.Prefix.Bits()), Addr: pc.Prefix.Addr().As16()}
		v6[i] = pc.Class
	}
	kp := make([]egressPortKey, len(c.Ports))
	vp := make([]uint32, len(c.Ports))
	for i, pe := range c.Ports {
		kp[i] = egressPortKey{Prefixlen: 40 + uint32(pe.Bits), Proto: pe.Proto}
		// The key's class and port are big endian so the trie matches them
		// from their first bit; Class is read natively, so swap it here.
		kp[i].Class = binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, pe.Class))
		binary.BigEndian.PutUint16(kp[i].Port[:], pe.Port)
		vp[i] = verdictAllow
		if pe.Action != policy.Allow {
			vp[i] = verdictDeny
		}
	}
	if err := putAll(objs.v4, k4, v4); err != nil {
		return fmt.Errorf("fill IPv4 prefixes: %w", err)
	}
	if err := putAll(objs.v6, k6, v6); err != nil {
		return fmt.Errorf("fill IPv6 prefixes: %w", err)
	}
	if err := putAll(objs.ports, kp, vp); err != nil {
		return fmt.Errorf("fill port table: %w", err)
	}
	return nil
}

const (
	verdictAllow = 1
	verdictDeny  = 2
)

// putAll writes keys and values in one batch where the map type supports it.
func putAll[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (a *Attachment) attachEgress(spec Spec, dir string) error {
	objs := a.egress
	for _, l := range egressLinks {
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: spec.Cgroup, Attach: l.attach, Program: objs.progs[l.name]})
		if err != nil {
			return fmt.Errorf("attach %s: %w", l.name, err)
		}
		a.links = append(a.links, lk)
		if err := lk.Pin(filepath.Join(dir, l.name)); err != nil {
			return fmt.Errorf("pin %s: %w", l.name, err)
		}
	}
	for name, m := range map[string]*ebpf.Map{"map_v4_prefixes": objs.v4, "map_v6_prefixes": objs.v6, "map_ports": objs.ports} {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

func (a *Attachment) pinMeta(dir string, m meta) error {
	mm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_meta", Type: ebpf.Array, KeySize: 4, ValueSize: uint32(binary.Size(m)), MaxEntries: 1})
	if err != nil {
		return err
	}
	a.objs = append(a.objs, mm)
	if err := mm.Put(uint32(0), m); err != nil {
		return err
	}
	return mm.Pin(filepath.Join(dir, metaPin))
}

// digest identifies what an attachment enforces, and where.
func (s Spec) digest(cgid uint64) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "cgroup %d mode %d\n", cgid, s.Mode)
	if e := s.Egress; e != nil {
		fmt.Fprintf(h, "egress default %d\n", e.Default)
		for _, pc := range append(append([]policy.PrefixClass{}, e.V4...), e.V6...) {
			fmt.Fprintf(h, "%s %d\n", pc.Prefix, pc.Class)
		}
		for _, pe := range e.Ports {
			fmt.Fprintf(h, "%d %d %d/%d %d\n", pe.Class, pe.Proto, pe.Port, pe.Bits, pe.Action)
		}
	}
	if x := s.Exec; x != nil {
		fmt.Fprintf(h, "exec default %d\n", x.Default)
		ids := make([]policy.FileID, 0, len(x.Files))
		for id := range x.Files {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b policy.FileID) int {
			if a.Dev != b.Dev {
				return cmp.Compare(a.Dev, b.Dev)
			}
			return cmp.Compare(a.Ino, b.Ino)
		})
		for _, id := range ids {
			fmt.Fprintf(h, "%d:%d %d\n", id.Dev, id.Ino, x.Files[id])
		}
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

func readMeta(dir string) (meta, error) {
	var v meta
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, metaPin), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return v, err
	}
	defer m.Close()
	err = m.Lookup(uint32(0), &v)
	return v, err
}

// complete reports whether every pin of an attachment's parts is there.
func complete(dir string, parts uint64) bool {
	var names []string
	if parts&partEgress != 0 {
		for _, l := range egressLinks {
			names = append(names, l.name)
		}
	}
	if parts&partExec != 0 {
		names = append(names, execRulesPin)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

// Close releases this process's handles; the pins keep the policy in force.
func (a *Attachment) Close() error {
	a.close()
	return nil
}

func (a *Attachment) close() {
	for _, l := range a.links {
		l.Close()
	}
	for i := len(a.objs) - 1; i >= 0; i-- {
		a.objs[i].Close()
	}
	a.links, a.objs = nil, nil
}

// Detach removes the attachment's pins and releases its handles: the
// programs leave the cgroup and the maps are freed.
func (a *Attachment) Detach() error {
	err := Detach(a.root, a.ID)
	a.close()
	return err
}

// Detach removes what any process pinned for id under root (DefaultPinRoot
// when empty): its entries in the host-wide exec maps, then its pins, which
// hold the last references to its links and maps, so nothing stays
// attached. Detaching what is not there is fine.
func Detach(root, id string) error { return detach(root, id, false) }

// detach is Detach; keepExec leaves the host-wide exec program in place
// when id was its last user (Pool.Detach: a daemon's).
func detach(root, id string, keepExec bool) error {
	if root == "" {
		root = DefaultPinRoot
	}
	if !validID.MatchString(id) {
		return fmt.Errorf("detach: invalid id %q", id)
	}
	dir := filepath.Join(root, id)
	if m, err := readMeta(dir); err == nil && m.Parts&partExec != 0 {
		if err := withdrawOld(root, dir, m.Cgroup, keepExec); err != nil {
			return fmt.Errorf("detach %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("detach %s: %w", id, err)
	}
	return nil
}

// List returns the ids pinned under root. It also removes what attaches
// that died half-way left behind (tmp-<pid>-... of processes that are gone).
func List(root string) ([]string, error) {
	if root == "" {
		root = DefaultPinRoot
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if rest, isTmp := strings.CutPrefix(name, "tmp-"); isTmp {
			pid, _, _ := strings.Cut(rest, "-")
			if n, err := strconv.Atoi(pid); err == nil && unix.Kill(n, 0) == unix.ESRCH {
				os.RemoveAll(filepath.Join(root, name))
			}
			continue
		}
		if e.IsDir() && validID.MatchString(name) && !strings.HasPrefix(name, "_") {
			ids = append(ids, name)
		}
	}
	return ids, nil
}

// ensurePinRoot makes the pin root, first mounting bpffs on /sys/fs/bpf if
// the root is below it and nothing is mounted there.
func ensurePinRoot(root string) error {
	var st unix.Statfs_t
	if strings.HasPrefix(root, "/sys/fs/bpf/") && unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on /sys/fs/bpf: %w", err)
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("pin root %s: %w (is bpffs mounted there?)", root, err)
	}
	return nil
}

func randomHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// OwnerOf tells which kind of process attached id (0 if unknown).
func OwnerOf(root, id string) Owner {
	if root == "" {
		root = DefaultPinRoot
	}
	m, err := readMeta(filepath.Join(root, id))
	if err != nil {
		return 0
	}
	return m.Owner
}

// SharedEvents returns the event ring buffer and lost counter pinned under
// root/_events, making and pinning them first if they are not there. A
// daemon that restarts reads the ring its containers' programs still write.
func SharedEvents(root string) (*EventMaps, error) {
	if err := ensurePinRoot(root); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "_events")
	ring, err1 := ebpf.LoadPinnedMap(filepath.Join(dir, "ring"), nil)
	lost, err2 := ebpf.LoadPinnedMap(filepath.Join(dir, "lost"), nil)
	if err1 == nil && err2 == nil {
		return &EventMaps{Ring: ring, Lost: lost}, nil
	}
	for _, m := range []*ebpf.Map{ring, lost} {
		if m != nil {
			m.Close()
		}
	}
	ev, err := NewEventMaps()
	if err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		err = ev.Ring.Pin(filepath.Join(dir, "ring"))
	}
	if err == nil {
		err = ev.Lost.Pin(filepath.Join(dir, "lost"))
	}
	if err != nil {
		os.RemoveAll(dir)
		ev.Ring.Close()
		ev.Lost.Close()
		return nil, fmt.Errorf("pin shared events: %w", err)
	}
	return ev, nil
}

// CgroupOwners maps policed cgroup ids to the ids pinned under root, from
// their meta maps: what a reader needs to name the container of an event.
func CgroupOwners(root string) map[uint64]string {
	if root == "" {
		root = DefaultPinRoot
	}
	ids, _ := List(root)
	out := make(map[uint64]string, len(ids))
	for _, id := range ids {
		if m, err := readMeta(filepath.Join(root, id)); err == nil {
			out[m.Cgroup] = id
		}
	}
	return out
}
