package bpf

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	ID     string           // the pin directory's name: a container id, or run-<pid>
	Cgroup string           // the cgroup v2 directory
	Egress *policy.Compiled // nil: no egress policy
	Mode   policy.Mode
}

// EventMaps are the ring buffer the programs write events to and the
// counter of events it had no room for.
type EventMaps struct {
	Ring, Lost *ebpf.Map
}

// Options tune an attach.
type Options struct {
	PinRoot string // DefaultPinRoot when empty
	// Events, when set, is shared by every attachment (one reader for all
	// containers); otherwise each attachment has its own.
	Events *EventMaps
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
	ID, Dir string
	Events  EventMaps
	objs    []ebpfCloser
	links   []link.Link
}

type ebpfCloser interface{ Close() error }

// pinned names under the attachment's directory, and what attaches where.
var egressLinks = []struct {
	name   string
	attach ebpf.AttachType
	prog   func(*egressObjects) *ebpf.Program
}{
	// sock_create first: from then on no unjudgeable socket can be made.
	{"link_sock_create", ebpf.AttachCGroupInetSockCreate, func(o *egressObjects) *ebpf.Program { return o.NgSockCreate }},
	{"link_connect4", ebpf.AttachCGroupInet4Connect, func(o *egressObjects) *ebpf.Program { return o.NgConnect4 }},
	{"link_connect6", ebpf.AttachCGroupInet6Connect, func(o *egressObjects) *ebpf.Program { return o.NgConnect6 }},
	{"link_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(o *egressObjects) *ebpf.Program { return o.NgSendmsg4 }},
	{"link_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(o *egressObjects) *ebpf.Program { return o.NgSendmsg6 }},
}

const metaPin = "meta" // cgroup id and policy digest, for idempotence and reconciliation

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

var egressSpec = sync.OnceValues(loadEgress)

// Attach holds spec.Cgroup to spec's policy and pins everything under
// <PinRoot>/<ID>. Attaching the same spec twice is a no-op; attaching a
// different policy for the same id replaces the old one without a gap (both
// are in force for a moment, and a flow must pass both). A failure leaves
// nothing attached or pinned.
func Attach(spec Spec, opts *Options) (*Attachment, error) {
	if !validID.MatchString(spec.ID) {
		return nil, fmt.Errorf("attach: invalid id %q: expected 1-200 letters, digits, '_' or '-'", spec.ID)
	}
	if spec.Egress == nil {
		return nil, fmt.Errorf("attach %s: nothing to attach (no egress policy)", spec.ID)
	}
	root := opts.pinRoot()
	if err := ensurePinRoot(root); err != nil {
		return nil, err
	}
	cgid, err := cgroup.ID(spec.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	digest := spec.digest(cgid)
	dir := filepath.Join(root, spec.ID)
	if old, err := readMeta(dir); err == nil && old == digest && complete(dir) {
		return &Attachment{ID: spec.ID, Dir: dir}, nil
	}

	a := &Attachment{ID: spec.ID, Dir: dir}
	tmp := filepath.Join(root, fmt.Sprintf("tmp-%d-%s-%s", os.Getpid(), randomHex(), spec.ID))
	ok := false
	defer func() {
		if !ok {
			a.close()
			os.RemoveAll(tmp)
		}
	}()
	if err := a.loadEgress(spec, opts); err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	if err := a.attachAndPin(spec, tmp, digest); err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", spec.ID, spec.Cgroup, err)
	}
	// The new links are in force: now retire any old ones and take the name.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("attach %s: replace %s: %w", spec.ID, dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	ok = true
	return a, nil
}

func (a *Attachment) loadEgress(spec Spec, opts *Options) error {
	cs, err := egressSpec()
	if err != nil {
		return err
	}
	cs = cs.Copy()
	c := spec.Egress
	cs.Maps[egressMapV4Prefixes].MaxEntries = uint32(max(1, len(c.V4)))
	cs.Maps[egressMapV6Prefixes].MaxEntries = uint32(max(1, len(c.V6)))
	cs.Maps[egressMapPorts].MaxEntries = uint32(max(1, len(c.Ports)))
	if err := cs.Variables[egressVarAudit].Set(uint32(spec.Mode)); err != nil {
		return err
	}
	co := &ebpf.CollectionOptions{}
	if opts != nil && opts.Events != nil {
		// A shared ring buffer is sized by whoever made it.
		cs.Maps[egressMapEvents].MaxEntries = opts.Events.Ring.MaxEntries()
		co.MapReplacements = map[string]*ebpf.Map{egressMapEvents: opts.Events.Ring, egressMapLostEvents: opts.Events.Lost}
	}
	var objs egressObjects
	if err := cs.LoadAndAssign(&objs, co); err != nil {
		return fmt.Errorf("load egress programs: %w", err)
	}
	a.objs = append(a.objs, &objs)
	a.Events = EventMaps{Ring: objs.Events, Lost: objs.LostEvents}
	return fillEgress(&objs, c)
}

// fillEgress writes the compiled tables into the tries.
func fillEgress(objs *egressObjects, c *policy.Compiled) error {
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
	if err := putAll(objs.V4Prefixes, k4, v4); err != nil {
		return fmt.Errorf("fill IPv4 prefixes: %w", err)
	}
	if err := putAll(objs.V6Prefixes, k6, v6); err != nil {
		return fmt.Errorf("fill IPv6 prefixes: %w", err)
	}
	if err := putAll(objs.Ports, kp, vp); err != nil {
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

func (a *Attachment) attachAndPin(spec Spec, dir string, digest [32]byte) error {
	objs := a.objs[0].(*egressObjects)
	for _, l := range egressLinks {
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: spec.Cgroup, Attach: l.attach, Program: l.prog(objs)})
		if err != nil {
			return fmt.Errorf("attach %s: %w", l.name, err)
		}
		a.links = append(a.links, lk)
		if err := lk.Pin(filepath.Join(dir, l.name)); err != nil {
			return fmt.Errorf("pin %s: %w", l.name, err)
		}
	}
	for name, m := range map[string]*ebpf.Map{"map_v4_prefixes": objs.V4Prefixes, "map_v6_prefixes": objs.V6Prefixes, "map_ports": objs.Ports} {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	meta, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_meta", Type: ebpf.Array, KeySize: 4, ValueSize: 32, MaxEntries: 1})
	if err != nil {
		return err
	}
	a.objs = append(a.objs, meta)
	if err := meta.Put(uint32(0), digest); err != nil {
		return err
	}
	return meta.Pin(filepath.Join(dir, metaPin))
}

// digest identifies what an attachment enforces, and where.
func (s Spec) digest(cgid uint64) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "cgroup %d mode %d default %d\n", cgid, s.Mode, s.Egress.Default)
	for _, pc := range append(append([]policy.PrefixClass{}, s.Egress.V4...), s.Egress.V6...) {
		fmt.Fprintf(h, "%s %d\n", pc.Prefix, pc.Class)
	}
	for _, pe := range s.Egress.Ports {
		fmt.Fprintf(h, "%d %d %d/%d %d\n", pe.Class, pe.Proto, pe.Port, pe.Bits, pe.Action)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

func readMeta(dir string) ([32]byte, error) {
	var d [32]byte
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, metaPin), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return d, err
	}
	defer m.Close()
	err = m.Lookup(uint32(0), &d)
	return d, err
}

// complete reports whether every link of an attachment is pinned.
func complete(dir string) bool {
	for _, l := range egressLinks {
		if _, err := os.Stat(filepath.Join(dir, l.name)); err != nil {
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
	err := os.RemoveAll(a.Dir)
	a.close()
	return err
}

// Detach removes what any process pinned for id under root (DefaultPinRoot
// when empty). Removing the pins drops the last references to the links and
// maps, so nothing stays attached. Detaching what is not there is fine.
func Detach(root, id string) error {
	if root == "" {
		root = DefaultPinRoot
	}
	if !validID.MatchString(id) {
		return fmt.Errorf("detach: invalid id %q", id)
	}
	if err := os.RemoveAll(filepath.Join(root, id)); err != nil {
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
		if e.IsDir() && validID.MatchString(name) {
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
