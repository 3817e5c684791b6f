package policy

import (
	"net/netip"
	"reflect"
	"testing"
)

// Every field of the compiled tables must change the digest: a field left
// out would let a changed policy pass for the one already attached.
func TestDigestCoversEveryField(t *testing.T) {
	c := &Compiled{
		V4:           []Run4{{Start: 10 << 24, Class: 1}},
		V6:           []Run6{{Hi: 0x20010db8 << 32, Lo: 7, Class: 2}},
		Ports:        []PortRun{{Class: 1, Proto: 6, Port: 443, Verdict: Verdict{Deny, LayerLabel}}},
		Classes:      3,
		Sockets:      Verdict{Deny, LayerCeiling},
		UIDRuns:      []IDRun{{0}, {1000}},
		GIDRuns:      []IDRun{{0}, {50}},
		Programs:     2,
		Overrides:    []Override{{Class: 1, PrincipalClass: PrincipalClass{Program: 1, UID: 1, GID: 0}, Effective: 2}},
		ProgramFiles: map[FileID]ProgramFile{{Dev: 1, Ino: 5}: {Stamp: Stamp{Sec: 6, Nsec: 7}, Class: 1}},
		Names:        []NameClass{{Pattern: "api.example.com", Class: 1}},
		Resolvers:    []netip.Addr{netip.MustParseAddr("10.96.0.10")},
	}
	x := &ExecTable{Default: Verdict{Deny, LayerLabel}, Files: map[FileID]Verdict{{Dev: 1, Ino: 2}: Allowed},
		Stamps: map[FileID]Stamp{{Dev: 1, Ino: 2}: {Sec: 3, Nsec: 4}},
		Conds:  map[FileID][]CondVerdict{{Dev: 1, Ino: 2}: {{UIDs: IDRange{0, 0}, GIDs: IDRange{0, 10}, Verdict: Verdict{Deny, LayerLabel}, Rule: 2}}},
		Rules:  map[FileID]int{{Dev: 1, Ino: 2}: 1}}
	for _, tc := range []struct {
		name   string
		v      any
		digest func() [32]byte
	}{{"Compiled", c, c.Digest}, {"ExecTable", x, x.Digest}} {
		before := tc.digest()
		n := 0
		for path, mutate := range mutations(reflect.ValueOf(tc.v).Elem(), tc.name) {
			undo := mutate()
			if tc.digest() == before {
				t.Errorf("changing %s does not change the digest", path)
			}
			undo()
			if tc.digest() != before {
				t.Fatalf("%s: undoing the change did not restore the digest", path)
			}
			n++
		}
		if n < 5 {
			t.Fatalf("%s: only %d fields found: the walk is broken", tc.name, n)
		}
	}
}

// mutations finds every leaf field below v (through structs, the first
// element of slices, and every key and value of maps) and returns, by path,
// a function that changes it and returns its undo.
func mutations(v reflect.Value, path string) map[string]func() func() {
	out := map[string]func() func(){}
	leaf := func(path string, set func(reflect.Value), get func() reflect.Value, next reflect.Value) {
		out[path] = func() func() {
			old := reflect.New(get().Type()).Elem()
			old.Set(get())
			set(next)
			return func() { set(old) }
		}
	}
	var walk func(v reflect.Value, path string, set func(reflect.Value))
	walk = func(v reflect.Value, path string, set func(reflect.Value)) {
		switch {
		case v.Type() == reflect.TypeOf(netip.Prefix{}):
			p := v.Interface().(netip.Prefix)
			leaf(path, set, func() reflect.Value { return v }, reflect.ValueOf(netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()))
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Field(i)
				if !v.Type().Field(i).IsExported() {
					continue
				}
				walk(f, path+"."+v.Type().Field(i).Name, f.Set)
			}
		case reflect.Slice:
			if v.Len() == 0 {
				panic(path + ": give the fixture an element")
			}
			walk(v.Index(0), path+"[0]", v.Index(0).Set)
		case reflect.Map:
			for _, k := range v.MapKeys() {
				// a value: change it in place
				val := reflect.New(v.Type().Elem()).Elem()
				val.Set(v.MapIndex(k))
				for p, m := range mutations(val, path+"[k]") {
					out[p] = func() func() {
						undo := m()
						v.SetMapIndex(k, val)
						return func() { undo(); v.SetMapIndex(k, val) }
					}
				}
				// a key: move the entry
				key := reflect.New(k.Type()).Elem()
				key.Set(k)
				for p, m := range mutations(key, path+".key") {
					out[p] = func() func() {
						orig := reflect.New(k.Type()).Elem()
						orig.Set(key)
						elem := v.MapIndex(orig)
						undo := m()
						v.SetMapIndex(orig, reflect.Value{})
						v.SetMapIndex(key, elem)
						return func() {
							v.SetMapIndex(key, reflect.Value{})
							undo()
							v.SetMapIndex(key, elem)
						}
					}
				}
			}
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			leaf(path, set, func() reflect.Value { return v }, reflect.ValueOf(v.Int()+1).Convert(v.Type()))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			leaf(path, set, func() reflect.Value { return v }, reflect.ValueOf(v.Uint()+1).Convert(v.Type()))
		case reflect.Bool:
			leaf(path, set, func() reflect.Value { return v }, reflect.ValueOf(!v.Bool()))
		case reflect.String:
			leaf(path, set, func() reflect.Value { return v }, reflect.ValueOf(v.String()+"x").Convert(v.Type()))
		default:
			panic(path + ": a field of kind " + v.Kind().String() + ": teach mutations about it")
		}
	}
	walk(v, path, v.Set)
	return out
}
