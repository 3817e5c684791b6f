package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/policy"
)

// netns is a network namespace the benchmark makes: loopback up, the
// benchmark's destinations on it.
type netns struct {
	name string
	fd   int
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func newNetns(name string, addrs []netip.Addr) (*netns, error) {
	if err := run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &netns{name: name, fd: -1}
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		ns.remove()
		return nil, err
	}
	for _, a := range addrs {
		if err := run("ip", "-n", name, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"); err != nil {
			ns.remove()
			return nil, err
		}
	}
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		ns.remove()
		return nil, err
	}
	ns.fd = fd
	return ns, nil
}

// enter moves the calling thread (locked to its goroutine) into the
// namespace: the sockets it makes from then on are that namespace's.
func (ns *netns) enter() error { return unix.Setns(ns.fd, unix.CLONE_NEWNET) }

func (ns *netns) remove() {
	if ns.fd >= 0 {
		unix.Close(ns.fd)
	}
	exec.Command("ip", "netns", "del", ns.name).Run()
}

// element is one allowed (prefix, protocol, ports) of a policy, as the
// peers hold it.
type element struct {
	p      netip.Prefix
	proto  string // tcp, udp
	lo, hi uint16
}

// elements are a policy's allow rules as the peers' set elements: a rule
// for "any" protocol is one for TCP and one for UDP.
func elements(e *policy.Egress) []element {
	var out []element
	for _, r := range e.Rules {
		protos := []string{"tcp", "udp"}
		if r.Proto == policy.TCP {
			protos = protos[:1]
		} else if r.Proto == policy.UDP {
			protos = protos[1:]
		}
		for _, proto := range protos {
			for _, pr := range r.Ports {
				out = append(out, element{r.Dest, proto, pr.Lo, pr.Hi})
			}
		}
	}
	return out
}

// nftables: the policy as an administrator would write it for nftables: a
// verdict map on (protocol, port) jumps to a chain per port that looks the
// destination up in interval sets of the prefixes allowing that port (one
// lookup each, its cost growing with the log of the set), the rest dropped.
// (One set of (address, protocol, port) intervals cannot hold the rules:
// nftables refuses overlapping elements there.)
func loadNft(ns *netns, e *policy.Egress) error {
	type key struct {
		proto  string
		lo, hi uint16
	}
	sets := map[key][2][]string{}
	var keys []key
	for _, el := range elements(e) {
		k := key{el.proto, el.lo, el.hi}
		v, ok := sets[k]
		if !ok {
			keys = append(keys, k)
		}
		fam := 0
		if el.p.Addr().Is6() {
			fam = 1
		}
		v[fam] = append(v[fam], el.p.String())
		sets[k] = v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet ngbench {\n")
	var vmap []string
	for i, k := range keys {
		v := sets[k]
		for fam, typ := range []string{"ipv4_addr", "ipv6_addr"} {
			fmt.Fprintf(&b, "  set s%d_%d { type %s; flags interval; auto-merge;", i, fam, typ)
			if len(v[fam]) > 0 {
				fmt.Fprintf(&b, " elements = { %s }", strings.Join(v[fam], ", "))
			}
			fmt.Fprintf(&b, " }\n")
		}
		fmt.Fprintf(&b, "  chain c%d { ip daddr @s%d_0 accept; ip6 daddr @s%d_1 accept; }\n", i, i, i)
		ports := fmt.Sprint(k.lo)
		if k.hi != k.lo {
			ports = fmt.Sprintf("%d-%d", k.lo, k.hi)
		}
		vmap = append(vmap, fmt.Sprintf("%s . %s : jump c%d", k.proto, ports, i))
	}
	// the benchmark's TCP server answers in the same namespace: its replies
	// pass (nriguard judges only what a container sends, not answers)
	fmt.Fprintf(&b, "  chain out { type filter hook output priority 0; policy drop; tcp sport { %d, %d } accept;\n", tcpPort, streamPort)
	fmt.Fprintf(&b, "    meta l4proto . th dport vmap { %s }; }\n}\n", strings.Join(vmap, ", "))
	f, err := os.CreateTemp("", "ngbench-*.nft")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	f.WriteString(b.String())
	f.Close()
	return run("ip", "netns", "exec", ns.name, "nft", "-f", f.Name())
}

// iptables + ipset: hash:net,port sets of the policy's (prefix, protocol,
// port), matched in OUTPUT; the rest dropped.
func loadIpset(ns *netns, e *policy.Egress) error {
	els := elements(e)
	max := 16
	for _, el := range els {
		max += int(el.hi-el.lo) + 1 // a range is an element per port
	}
	var b strings.Builder
	fmt.Fprintf(&b, "create ngb4 hash:net,port family inet maxelem %d\ncreate ngb6 hash:net,port family inet6 maxelem %d\n", max, max)
	for _, el := range els {
		set := "ngb4"
		if el.p.Addr().Is6() {
			set = "ngb6"
		}
		ports := fmt.Sprint(el.lo)
		if el.hi != el.lo {
			ports = fmt.Sprintf("%d-%d", el.lo, el.hi)
		}
		fmt.Fprintf(&b, "add %s %s,%s:%s\n", set, el.p, el.proto, ports)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.name, "ipset", "restore")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ipset restore: %v: %s", err, out)
	}
	sport := fmt.Sprintf("%d:%d", tcpPort, streamPort) // the benchmark's TCP servers' answers, as for nftables
	for _, c := range [][]string{
		{"iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", sport, "-j", "ACCEPT"},
		{"iptables", "-A", "OUTPUT", "-m", "set", "--match-set", "ngb4", "dst,dst", "-j", "ACCEPT"},
		{"iptables", "-A", "OUTPUT", "-j", "DROP"},
		{"ip6tables", "-A", "OUTPUT", "-p", "tcp", "--sport", sport, "-j", "ACCEPT"},
		{"ip6tables", "-A", "OUTPUT", "-m", "set", "--match-set", "ngb6", "dst,dst", "-j", "ACCEPT"},
		{"ip6tables", "-A", "OUTPUT", "-j", "DROP"},
	} {
		if err := run("ip", append([]string{"netns", "exec", ns.name}, c...)...); err != nil {
			return err
		}
	}
	return nil
}

// removeIpset takes the sets away (they are the kernel's, not the
// namespace's: a namespace that goes keeps them only while rules use them).
func removeIpset(ns *netns) {
	for _, c := range [][]string{{"iptables", "-F", "OUTPUT"}, {"ip6tables", "-F", "OUTPUT"}, {"ipset", "destroy", "ngb4"}, {"ipset", "destroy", "ngb6"}} {
		exec.Command("ip", append([]string{"netns", "exec", ns.name}, c...)...).Run()
	}
}
