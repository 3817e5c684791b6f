package plugin_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"

	"github.com/nriguard/nriguard/bpf"
)

// BenchmarkPluginLatency: what the plugin adds to a container's life, as
// the runtime sees it over the NRI socket, with 1, 100 and 1,000 other
// labelled containers live. Each iteration is one container's
// CreateContainer+StartContainer (policy decided, a slot of the shared
// egress programs taken and its tables filled, the programs attached,
// pinned) and StopContainer+RemoveContainer (detached, the slot idle).
//
// gap=20ms leaves 20 ms (untimed) between one container's removal and the
// next one's creation (a crictl start alone takes ~60 ms); gap=0 runs them
// back to back. burst-start is the start of the live containers
// themselves, one after another with none stopping: a deployment scaling
// up, which outruns the slots the plugin readies ahead (32).
//
//	go test -run '^$' -bench PluginLatency -benchtime 300x ./plugin/
func BenchmarkPluginLatency(b *testing.B) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		live []int
		exec bool
		gap  time.Duration
	}{
		{"egress", []int{1, 100, 1000}, false, 20 * time.Millisecond},
		{"egress+exec", []int{1, 100, 1000}, true, 20 * time.Millisecond},
		{"egress", []int{1, 1000}, false, 0},
		{"egress+exec", []int{1, 1000}, true, 0},
	} {
		for _, live := range bc.live {
			b.Run(fmt.Sprintf("%s/gap=%s/live=%d", bc.name, bc.gap, live), func(b *testing.B) {
				rt, root := newRuntime(b), pinRoot(b)
				startPlugin(b, rt, root, "")
				label := func(i int) map[string]string {
					l := map[string]string{"egress.nriguard.io": fmt.Sprintf("allow tcp 10.1.2.3:%d; allow udp 10.96.0.10:53", 1000+i%60000)}
					if bc.exec {
						// the init process (sleep) may run, and nothing else
						l["exec.nriguard.io"] = "allow " + sleep
					}
					return l
				}
				var ms0 goruntime.MemStats
				goruntime.GC()
				goruntime.ReadMemStats(&ms0)
				// The live containers start one after another with none
				// stopping: a burst, which outruns the preloaded sets.
				others := make([]*ctr, live)
				var burst []float64
				for i := range others {
					others[i] = rt.newContainer(fmt.Sprintf("live%d", i), label(i), nil)
					if err := rt.create(others[i]); err != nil {
						b.Fatal(err)
					}
					t0 := time.Now()
					if err := rt.start(others[i]); err != nil {
						b.Fatal(err)
					}
					burst = append(burst, float64(time.Since(t0).Microseconds())/1000)
				}
				var ms1 goruntime.MemStats
				goruntime.GC()
				goruntime.ReadMemStats(&ms1)
				kernel, err := bpf.Memory(filepath.Join(root, others[0].c.Id))
				if err != nil {
					b.Fatal(err)
				}
				// once for all: the shared egress programs (and the tables
				// their idle slots keep), the exec program and rule table,
				// the ring
				shared, _ := bpf.SharedMemory(root)
				var create, start, stop, remove []float64
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					time.Sleep(bc.gap)
					c := rt.newContainer(fmt.Sprintf("n%d", i), label(i), nil)
					b.StartTimer()
					t0 := time.Now()
					if err := rt.create(c); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := rt.start(c); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					rt.exited(c)
					t3 := time.Now()
					if _, err := rt.r.StopContainer(context.Background(), &adaptation.StopContainerRequest{Pod: c.pod, Container: c.c}); err != nil {
						b.Fatal(err)
					}
					t4 := time.Now()
					if err := rt.r.RemoveContainer(context.Background(), &adaptation.RemoveContainerRequest{Pod: c.pod, Container: c.c}); err != nil {
						b.Fatal(err)
					}
					t5 := time.Now()
					ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
					create, start = append(create, ms(t1.Sub(t0))), append(start, ms(t2.Sub(t1)))
					stop, remove = append(stop, ms(t4.Sub(t3))), append(remove, ms(t5.Sub(t4)))
				}
				b.StopTimer()
				for _, m := range []struct {
					name string
					xs   []float64
				}{{"create", create}, {"start", start}, {"stop", stop}, {"remove", remove}} {
					b.ReportMetric(pct(m.xs, 50), m.name+"-p50-ms")
					b.ReportMetric(pct(m.xs, 99), m.name+"-p99-ms")
					b.ReportMetric(pct(m.xs, 90), m.name+"-p90-ms")
					b.ReportMetric(pct(m.xs, 100), m.name+"-max-ms")
				}
				if live >= 100 {
					b.ReportMetric(pct(burst, 50), "burst-start-p50-ms")
					b.ReportMetric(pct(burst, 99), "burst-start-p99-ms")
				}
				b.ReportMetric(float64(kernel)/1024, "kernel-KiB/container")
				b.ReportMetric(float64(shared)/1024, "shared-KiB")
				// The test's runtime side and the plugin share this process: the
				// heap growth per live container is an upper bound for the daemon.
				b.ReportMetric(float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/float64(live)/1024, "heap-KiB/container")
				for _, c := range others {
					rt.stopAndRemove(c)
				}
			})
		}
	}
}

func pct(xs []float64, p int) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
