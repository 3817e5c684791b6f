package observe

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nriguard/nriguard/events"
)

// The status a plugin serves counts its lost records by kind and lists
// each container its policy records named once per reason, with the last
// message and how many there were; the stream goes on being served.
func TestStatusHandler(t *testing.T) {
	tr := NewTracker()
	t0 := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	for _, r := range []events.Record{
		{Kind: events.KindLost, LostKind: events.LostEgress, Count: 1204},
		{Kind: events.KindLost, LostKind: events.LostEgress, Count: 6},
		{Kind: events.KindConnect, Verdict: events.Denied, ContainerID: "c1"},
		{Kind: events.KindPolicy, Reason: events.ReasonLate, ContainerID: "c1", Container: "web", Pod: "shop", Namespace: "prod", Message: "first", Time: t0},
		{Kind: events.KindPolicy, Reason: events.ReasonLate, ContainerID: "c1", Container: "web", Pod: "shop", Namespace: "prod", Message: "again", Time: t0.Add(time.Minute)},
		{Kind: events.KindPolicy, Reason: events.ReasonUndecided, ContainerID: "c2", Message: "labels refused", Time: t0},
	} {
		tr.Observe(&r, nil)
	}
	srv := httptest.NewServer(Handler(NewHub(), func() Status {
		s := Status{Version: "test"}
		tr.Fill(&s)
		return s
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%v, %q", err, resp.Header.Get("Content-Type"))
	}
	if s.Version != "test" || s.Lost[events.LostEgress] != 1210 || s.Lost[events.LostExec] != 0 || len(s.Lost) != 2 {
		t.Errorf("version %q, lost %v: want egress 1210, exec 0", s.Version, s.Lost)
	}
	late := s.Policy[events.ReasonLate]
	if len(late) != 1 || late[0].ContainerID != "c1" || late[0].Container != "web" || late[0].Message != "again" || late[0].Count != 2 || !late[0].Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("late: %+v; want c1 once, its last message, counted twice", late)
	}
	if u := s.Policy[events.ReasonUndecided]; len(u) != 1 || u[0].ContainerID != "c2" {
		t.Errorf("undecided: %+v", u)
	}
	if k, ok := s.Policy[events.ReasonKept]; !ok || len(k) != 0 {
		t.Errorf("kept: %v (listed: %v), want listed and empty", k, ok)
	}
	other, err := http.Get(srv.URL + "/v1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	other.Body.Close()
	if other.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown path: %s, want 404", other.Status)
	}
}
