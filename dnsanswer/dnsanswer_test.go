package dnsanswer

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// build writes an answer the way resolvers do, with dnsmessage.
func build(t testing.TB, id uint16, trunc, compress bool, q string, qtype dnsmessage.Type, rrs []dnsmessage.Resource) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, Truncated: trunc, RecursionAvailable: true})
	if compress {
		b.EnableCompression()
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q), Type: qtype, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, r := range rrs {
		switch body := r.Body.(type) {
		case *dnsmessage.AResource:
			must(b.AResource(r.Header, *body))
		case *dnsmessage.AAAAResource:
			must(b.AAAAResource(r.Header, *body))
		case *dnsmessage.CNAMEResource:
			must(b.CNAMEResource(r.Header, *body))
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func rr(name string, ttl uint32, body dnsmessage.ResourceBody) dnsmessage.Resource {
	h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl}
	return dnsmessage.Resource{Header: h, Body: body}
}

func TestParseAnswers(t *testing.T) {
	a4 := func(s string) *dnsmessage.AResource { return &dnsmessage.AResource{A: netip.MustParseAddr(s).As4()} }
	a6 := func(s string) *dnsmessage.AAAAResource {
		return &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(s).As16()}
	}
	for _, compress := range []bool{false, true} {
		msg := build(t, 0x1234, false, compress, "API.Example.com.", dnsmessage.TypeA, []dnsmessage.Resource{
			rr("API.Example.com.", 60, &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("edge.cdn.example.net.")}),
			rr("edge.cdn.example.net.", 30, a4("192.0.2.1")),
			rr("edge.cdn.example.net.", 5, a4("192.0.2.2")),
		})
		a, err := Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		want := []Addr{{netip.MustParseAddr("192.0.2.1"), 30}, {netip.MustParseAddr("192.0.2.2"), 5}}
		if a.ID != 0x1234 || a.Name != "api.example.com" || a.Type != TypeA || !slices.Equal(a.Addrs, want) {
			t.Errorf("compress %v: %+v", compress, a)
		}
		if w, _ := Wire("api.example.com"); string(a.Wire) != string(w) {
			t.Errorf("wire %q, want %q", a.Wire, w)
		}
	}
	a, err := Parse(build(t, 1, false, true, "v6.example.com.", dnsmessage.TypeAAAA, []dnsmessage.Resource{rr("v6.example.com.", 7, a6("2001:db8::1"))}))
	if err != nil || len(a.Addrs) != 1 || a.Addrs[0].Addr != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("AAAA: %+v %v", a, err)
	}
	a, err = Parse(build(t, 1, true, true, "t.example.com.", dnsmessage.TypeA, []dnsmessage.Resource{rr("t.example.com.", 7, a4("192.0.2.9"))}))
	if err != nil || !a.Truncated || len(a.Addrs) != 0 {
		t.Errorf("truncated: %+v %v, want no addresses", a, err)
	}
	var many []dnsmessage.Resource
	for i := range MaxRecords + 4 {
		many = append(many, rr("m.example.com.", 1, a4(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String())))
	}
	if a, _ := Parse(build(t, 1, false, true, "m.example.com.", dnsmessage.TypeA, many)); len(a.Addrs) != MaxRecords {
		t.Errorf("%d records: learned %d, want the first %d", len(many), len(a.Addrs), MaxRecords)
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%x: parsed", bad)
		}
	}
}

// FuzzParse holds the parser to dnsmessage, a well-kept parser of the whole
// format: whatever both read, they read alike, and Parse never panics.
func FuzzParse(f *testing.F) {
	f.Add(build(f, 7, false, true, "a.example.com.", dnsmessage.TypeA, []dnsmessage.Resource{
		rr("a.example.com.", 60, &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("b.example.net.")}),
		rr("b.example.net.", 30, &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}})}))
	f.Add(build(f, 8, false, false, "x.example.com.", dnsmessage.TypeAAAA, []dnsmessage.Resource{
		rr("x.example.com.", 9, &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::9").As16()})}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, err := Parse(msg)
		var p dnsmessage.Parser
		h, perr := p.Start(msg)
		if perr != nil {
			return
		}
		qs, perr := p.AllQuestions()
		if perr != nil || len(qs) != 1 || qs[0].Class != dnsmessage.ClassINET || !h.Response || h.OpCode != 0 {
			if err == nil && perr == nil {
				t.Fatalf("parsed %+v; dnsmessage: header %+v questions %+v", a, h, qs)
			}
			return
		}
		// dnsmessage reads a compressed question; the datapath does not
		if msg[12]&0xc0 != 0 || strings.Contains(qs[0].Name.String(), "\x00") {
			return
		}
		if err == ErrName {
			return // a pointer inside the question, or a name over MaxNameWire
		}
		if err != nil {
			t.Fatalf("refused (%v) what dnsmessage reads: %+v %+v", err, h, qs)
		}
		if a.ID != h.ID || a.Truncated != h.Truncated || a.Type != uint16(qs[0].Type) {
			t.Fatalf("header: %+v, dnsmessage %+v %+v", a, h, qs)
		}
		if a.Truncated || (a.Type != TypeA && a.Type != TypeAAAA) {
			return
		}
		var want []Addr
		for i := 0; i < MaxRecords; i++ {
			rh, err := p.AnswerHeader()
			if err != nil {
				break
			}
			switch {
			case rh.Type == dnsmessage.TypeA && rh.Class == dnsmessage.ClassINET:
				r, err := p.AResource()
				if err != nil {
					return // dnsmessage is stricter about what follows
				}
				want = append(want, Addr{netip.AddrFrom4(r.A), rh.TTL})
			case rh.Type == dnsmessage.TypeAAAA && rh.Class == dnsmessage.ClassINET:
				r, err := p.AAAAResource()
				if err != nil {
					return
				}
				want = append(want, Addr{netip.AddrFrom16(r.AAAA), rh.TTL})
			default:
				if p.SkipAnswer() != nil {
					return
				}
			}
		}
		// each stops at a record it cannot read (dnsmessage reads an A or
		// AAAA past its record's length; Parse does not): up to there both
		// agree, and Parse never learns what dnsmessage reads otherwise
		n := min(len(a.Addrs), len(want))
		if !slices.Equal(a.Addrs[:n], want[:n]) {
			t.Fatalf("addresses %v, dnsmessage %v", a.Addrs, want)
		}
	})
}

func TestLearnable(t *testing.T) {
	for a, want := range map[string]bool{
		"192.0.2.1": true, "10.1.2.3": true, "223.255.255.255": true, "2001:db8::1": true, "::1:0:0:0:1": true,
		"0.0.0.0": false, "0.1.2.3": false, "127.0.0.1": false, "169.254.169.254": false, "224.0.0.1": false, "255.255.255.255": false,
		"::": false, "::1": false, "::192.0.2.1": false, "::ffff:192.0.2.1": false, "fe80::1": false, "febf::1": false, "ff02::1": false,
	} {
		if got := Learnable(netip.MustParseAddr(a)); got != want {
			t.Errorf("Learnable(%s) = %v, want %v", a, got, want)
		}
	}
}
