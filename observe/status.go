package observe

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/nriguard/nriguard/events"
)

// Status is what the plugin says of itself on GET /v1/status (nriguard
// status reads it: docs/install.md, "Watching").
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	PID     int       `json:"pid"`
	PinRoot string    `json:"pin_root"`
	// ExecBackend is the exec backend it uses (lsm, sigkill; "" none:
	// ExecBackendError says why).
	ExecBackend      string  `json:"exec_backend"`
	ExecBackendError string  `json:"exec_backend_error,omitempty"`
	Runtime          Runtime `json:"runtime"`
	Policed          int     `json:"policed"` // containers it attached or adopted
	// Lost counts, per lost_kind, the records its lost records said were
	// lost since it started.
	Lost map[string]uint64 `json:"lost"`
	// Policy lists, per reason (late, kept, undecided, unadoptable), the
	// containers its policy records named since it started.
	Policy map[string][]PolicyNote `json:"policy"`
}

// Runtime is the runtime the plugin is connected to.
type Runtime struct {
	Connected bool   `json:"connected"`
	Name      string `json:"name,omitempty"`
	Version   string `json:"version,omitempty"`
	Path      string `json:"path,omitempty"` // start or hook (docs/install.md)
}

// PolicyNote is a container a policy record named: the last record of
// that reason about it, and how many there were.
type PolicyNote struct {
	ContainerID string    `json:"container_id"`
	Container   string    `json:"container,omitempty"`
	Pod         string    `json:"pod,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Message     string    `json:"message"`
	Time        time.Time `json:"time"`
	Count       int       `json:"count"`
}

// maxNotes bounds the containers kept per reason: a node restarting its
// plugin in a loop would otherwise grow the list forever.
const maxNotes = 1024

// Tracker counts, from the record stream, what Status reports of it:
// lost records and policy records.
type Tracker struct {
	mu     sync.Mutex
	lost   map[string]uint64
	policy map[string][]PolicyNote
}

// NewTracker makes a tracker that has seen nothing.
func NewTracker() *Tracker {
	return &Tracker{lost: map[string]uint64{}, policy: map[string][]PolicyNote{}}
}

// Observe counts one record of the stream (a ReportEvents also-func).
func (t *Tracker) Observe(r *events.Record, _ []byte) {
	switch r.Kind {
	case events.KindLost:
		t.mu.Lock()
		t.lost[r.LostKind] += r.Count
		t.mu.Unlock()
	case events.KindPolicy:
		t.mu.Lock()
		defer t.mu.Unlock()
		notes := t.policy[r.Reason]
		for i := range notes {
			if notes[i].ContainerID == r.ContainerID {
				n := &notes[i]
				n.Container, n.Pod, n.Namespace, n.Message, n.Time = r.Container, r.Pod, r.Namespace, r.Message, r.Time
				n.Count++
				return
			}
		}
		if len(notes) < maxNotes {
			t.policy[r.Reason] = append(notes, PolicyNote{ContainerID: r.ContainerID, Container: r.Container, Pod: r.Pod,
				Namespace: r.Namespace, Message: r.Message, Time: r.Time, Count: 1})
		}
	}
}

// Fill copies what the tracker counted into s.
func (t *Tracker) Fill(s *Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Lost = map[string]uint64{events.LostEgress: 0, events.LostExec: 0}
	for k, n := range t.lost {
		s.Lost[k] = n
	}
	s.Policy = map[string][]PolicyNote{}
	for _, reason := range []string{events.ReasonLate, events.ReasonKept, events.ReasonUndecided, events.ReasonUnadoptable} {
		s.Policy[reason] = []PolicyNote{}
	}
	for reason, notes := range t.policy {
		s.Policy[reason] = append([]PolicyNote(nil), notes...)
	}
}

// Handler serves the record stream on /v1/events (hub) and the plugin's
// status on /v1/status (status is called for each request).
func Handler(hub *Hub, status func() Status) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/events", hub)
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			http.Error(w, "GET /v1/status", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(status())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "GET /v1/events[?namespace=N&pod=P&container=C&verdict=V&kind=K], GET /v1/status", http.StatusNotFound)
	})
	return mux
}
