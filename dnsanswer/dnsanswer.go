// Package dnsanswer is the reference for what the datapath learns from a
// DNS answer (bpf/egress.c, ng_skb_ingress): the same reading of the same
// bytes, with the same limits, in Go, where it can be tested and fuzzed.
// The kernel's parser is tested against it with real answers.
//
// A message teaches addresses only if it is a standard answer (QR set,
// opcode QUERY) to one question of class IN and type A or AAAA, not
// truncated; then every A and AAAA record of class IN among its first
// MaxRecords answer records is learned for the question's name, whatever
// its owner name (the CNAME chain a resolver follows ends at the question's
// addresses; the resolver is trusted, the answer's sender is checked).
package dnsanswer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Limits of the parser (bpf/nriguard.h, ng_limits; the bpf package's
// tests check that they agree).
const (
	// MaxRecords is how many answer records are read; the rest teach
	// nothing.
	MaxRecords = 16
	// MaxNameWire bounds the question's name in wire form (labels with
	// their length bytes, without the final zero), as in RFC 1035 (255
	// with it).
	MaxNameWire = 254
	// MaxLabels bounds the labels of an answer record's owner name that
	// are skipped before a compression pointer or the end.
	MaxLabels = 32
)

// Record types and class read.
const (
	TypeA    = 1
	TypeAAAA = 28
	ClassIN  = 1
)

// Addr is an address an answer teaches and its TTL in seconds.
type Addr struct {
	Addr netip.Addr
	TTL  uint32
}

// Answer is what a message says to the datapath.
type Answer struct {
	ID        uint16
	Truncated bool   // TC set: teaches nothing
	Name      string // the question, lower case, labels joined by '.'
	Wire      []byte // the question in wire form, lower case, without the final zero
	Type      uint16
	Addrs     []Addr
}

// Errors for messages that teach nothing.
var (
	ErrNotAnswer = errors.New("not a standard answer (QR, opcode QUERY)")
	ErrQuestion  = errors.New("not one question of class IN")
	ErrShort     = errors.New("message ends inside a field")
	ErrName      = errors.New("question name malformed, too long or of other bytes than letters, digits, '-' and '_' (compression, label over 63 bytes, over 254 bytes)")
)

// Parse reads a DNS message (a UDP payload) as the datapath does.
func Parse(msg []byte) (*Answer, error) {
	if len(msg) < 12 {
		return nil, ErrShort
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	if flags&0x8000 == 0 || flags&0x7800 != 0 {
		return nil, ErrNotAnswer
	}
	if binary.BigEndian.Uint16(msg[4:]) != 1 {
		return nil, ErrQuestion
	}
	a := &Answer{ID: binary.BigEndian.Uint16(msg), Truncated: flags&0x0200 != 0}
	ancount := int(binary.BigEndian.Uint16(msg[6:]))
	off := 12
	// the question: labels, no compression (the asker wrote it whole)
	var labels []string
	for {
		if off >= len(msg) {
			return nil, ErrShort
		}
		n := int(msg[off])
		if n == 0 {
			break
		}
		if n > 63 || off-12+1+n > MaxNameWire {
			return nil, ErrName
		}
		if off+1+n > len(msg) {
			return nil, ErrShort
		}
		label := asciiLower(msg[off+1 : off+1+n])
		if strings.IndexFunc(label, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_')
		}) >= 0 {
			return nil, ErrName // no rule names it: the datapath stops there
		}
		labels = append(labels, label)
		a.Wire = append(a.Wire, byte(n))
		a.Wire = append(a.Wire, label...)
		off += 1 + n
	}
	off++ // the final zero
	if off+4 > len(msg) {
		return nil, ErrShort
	}
	a.Name = strings.Join(labels, ".")
	a.Type = binary.BigEndian.Uint16(msg[off:])
	if binary.BigEndian.Uint16(msg[off+2:]) != ClassIN {
		return nil, ErrQuestion
	}
	off += 4
	if a.Truncated || (a.Type != TypeA && a.Type != TypeAAAA) {
		return a, nil
	}
	for range min(ancount, MaxRecords) {
		// the owner name: labels, then a zero or a pointer
		end := false
		for range MaxLabels + 1 {
			if off >= len(msg) {
				return a, nil
			}
			n := int(msg[off])
			switch {
			case n == 0:
				off++
				end = true
			case n&0xc0 == 0xc0:
				off += 2
				end = true
			case n&0xc0 != 0:
				return a, nil // a label type no one uses
			default:
				off += 1 + n
			}
			if end {
				break
			}
		}
		if !end || off+10 > len(msg) {
			return a, nil
		}
		typ, class := binary.BigEndian.Uint16(msg[off:]), binary.BigEndian.Uint16(msg[off+2:])
		ttl := binary.BigEndian.Uint32(msg[off+4:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if off+rdlen > len(msg) {
			return a, nil
		}
		if class == ClassIN && (typ == TypeA && rdlen == 4 || typ == TypeAAAA && rdlen == 16) {
			if addr, _ := netip.AddrFromSlice(msg[off : off+rdlen]); Learnable(addr) {
				a.Addrs = append(a.Addrs, Addr{addr, ttl})
			}
		}
		off += rdlen
	}
	return a, nil
}

// asciiLower lowers A-Z only, as the datapath does (other bytes as they are).
func asciiLower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// Wire writes a rule's name ("api.example.com", or the part after "*." of
// a wildcard) in wire form without the final zero, as the datapath's
// table of names holds it.
func Wire(name string) ([]byte, error) {
	var out []byte
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return nil, fmt.Errorf("invalid DNS name %q", name)
		}
		out = append(out, byte(len(l)))
		out = append(out, l...)
	}
	if len(out) > MaxNameWire {
		return nil, fmt.Errorf("DNS name %q is over %d bytes in wire form", name, MaxNameWire)
	}
	return out, nil
}

// Learnable tells whether an answer's address may be learned: never the
// host's own (loopback, unspecified), link-local (the cloud's metadata
// service), multicast, broadcast or reserved ones (IPv4 0/8, 127/8,
// 169.254/16, 224/3; IPv6 ::/96, ::ffff:0:0/96, fe80::/10, ff00::/8): a
// name's rule is no way to open those (an address rule is).
func Learnable(a netip.Addr) bool {
	b := a.As16()
	if a.Is4() {
		return b[12] != 0 && b[12] != 127 && b[12] < 224 && !(b[12] == 169 && b[13] == 254)
	}
	if b[0] == 0xff || b[0] == 0xfe && b[1]&0xc0 == 0x80 {
		return false
	}
	var zero [10]byte
	return !(string(b[:10]) == string(zero[:]) && (b[10] == 0 && b[11] == 0 || b[10] == 0xff && b[11] == 0xff))
}
