// Command promscrape is the e2e's Prometheus: it scrapes a metrics endpoint
// over HTTP, parses the answer with Prometheus's own text parser (a parse
// error fails it), and prints each sample of the families named with the
// prefix as one line: name{label="value",...} value (histograms: their
// sample count, as name_count).
package main

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: promscrape URL PREFIX")
		os.Exit(2)
	}
	resp, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "promscrape:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "promscrape:", resp.Status)
		os.Exit(1)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promscrape: the answer does not parse:", err)
		os.Exit(1)
	}
	var lines []string
	for name, f := range fams {
		if !strings.HasPrefix(name, os.Args[2]) {
			continue
		}
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			n, v := name, 0.0
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				n, v = name+"_count", float64(m.Histogram.GetSampleCount())
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %g", n, strings.Join(labels, ","), v))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
