package policy

import "testing"

func TestParseExec(t *testing.T) {
	e, err := ParseExec("exec.nriguard.io", "allow /usr/bin/curl; allow /app/\nallow //usr//local/bin/")
	if err != nil {
		t.Fatal(err)
	}
	if e.Default != Deny || len(e.Rules) != 3 {
		t.Fatalf("got %+v", e)
	}
	if r := e.Rules[1]; r.Path != "/app" || !r.Dir || r.Pos != 2 {
		t.Errorf("directory rule: %+v", r)
	}
	if r := e.Rules[2]; r.Path != "/usr/local/bin" || !r.Dir {
		t.Errorf("cleaned directory rule: %+v", r)
	}
	if e, _ := ParseExec("k", "deny /bin/nc"); e.Default != Allow {
		t.Errorf("only denies: default %v", e.Default)
	}
	for value, want := range map[string]string{
		"allow usr/bin/curl":          `exec.nriguard.io/container.web: rule 1 "allow usr/bin/curl": invalid path "usr/bin/curl": expected an absolute path, as the container sees it`,
		"allow /bin/ls; run /bin/sh":  `exec.nriguard.io/container.web: rule 2 "run /bin/sh": expected "allow", "deny" or "default" at the start, got "run"`,
		"allow /usr/bin/../sbin/x":    `exec.nriguard.io/container.web: rule 1 "allow /usr/bin/../sbin/x": invalid path "/usr/bin/../sbin/x": expected no . or .. components`,
		"allow /a b":                  `exec.nriguard.io/container.web: rule 1 "allow /a b": expected allow PATH with one absolute path (a trailing / for a directory), then qualifiers NAME=VALUE (uid=, gid=), got "b"`,
		"allow /bin/ls; deny /bin/nc": `exec.nriguard.io/container.web: mixes allow and deny rules without a default: add "default allow" or "default deny"`,
	} {
		_, err := ParseExec("exec.nriguard.io/container.web", value)
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got  %v\n want %s", value, err, want)
		}
	}
}

func FuzzParseExec(f *testing.F) {
	for _, s := range []string{"allow /usr/bin/curl; allow /app/", "deny /bin/nc\ndefault allow", "allow ../x", "default"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExec("exec.nriguard.io", s)
		if err != nil {
			return
		}
		for _, r := range e.Rules {
			if r.Path == "" || r.Path[0] != '/' {
				t.Fatalf("%q: rule path %q is not absolute", s, r.Path)
			}
		}
	})
}

func TestIntersectExec(t *testing.T) {
	a, b, c := FileID{1, 1}, FileID{1, 2}, FileID{1, 3}
	allowAB := NewExecTable(LayerLabel, Deny, map[FileID]Action{a: Allow, b: Allow}, nil)
	denyB := NewExecTable(LayerCeiling, Allow, map[FileID]Action{b: Deny}, nil)
	got := IntersectExec(Enforce, allowAB, denyB)
	// b stays in the table although the default denies too: its refusal
	// names another layer
	if got.Default != (Verdict{Deny, LayerLabel}) || got.Files[a] != Allowed || got.Files[b] != (Verdict{Deny, LayerCeiling}) || len(got.Files) != 2 {
		t.Errorf("allow a,b ∩ deny b: got %+v, want only a allowed, b refused by the ceiling", got)
	}
	open := NewExecTable(LayerLabel, Allow, nil, nil)
	got = IntersectExec(Enforce, open, denyB)
	if got.Default != Allowed || got.Files[b] != (Verdict{Deny, LayerCeiling}) || got.Files[c] != (Verdict{}) {
		t.Errorf("open ∩ deny b: got %+v", got)
	}
	// audit: the ceiling's refusal of b holds, the label's default is only reported
	got = IntersectExec(Audit, allowAB, denyB)
	if got.Default != (Verdict{WouldDeny, LayerLabel}) || got.Files[b] != (Verdict{Deny, LayerCeiling}) || got.Files[a] != Allowed {
		t.Errorf("audit: got %+v", got)
	}
	// both refuse: the ceiling is named, whatever the order
	got = IntersectExec(Enforce, denyB, NewExecTable(LayerLabel, Allow, map[FileID]Action{b: Deny}, nil))
	if got.Files[b] != (Verdict{Deny, LayerCeiling}) {
		t.Errorf("both refuse b: got %+v, want the ceiling named", got.Files[b])
	}
}
