package admin

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xdpnet/xdpnet/engine/stats"
)

// leaf is one number, bool or string of a snapshot, where /stats has it
// (JSON keys from the top) and the metric its tags give ("-": none).
type leaf struct {
	path   []string
	metric string
	value  float64
}

// fill sets every leaf of v to a value of its own (n counts them up) and
// gives every map one entry, every slice one element, every pointer a
// value, and returns the leaves. metric is what v's field says of
// /metrics.
func fill(v reflect.Value, path []string, metric string, n *int) []leaf {
	switch v.Kind() {
	case reflect.Struct:
		var out []leaf
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			p := path
			switch {
			case name == "-":
				continue
			case name == "" && f.Anonymous: // flattened into its parent
			case name == "":
				p = append(slices.Clone(path), f.Name)
			default:
				p = append(slices.Clone(path), name)
			}
			m, _ := parseMetric(fieldTag(t, f).Get("metric"))
			if metric == "-" {
				m = "-"
			}
			out = append(out, fill(v.Field(i), p, m, n)...)
		}
		return out
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		return fill(v.Elem(), path, metric, n)
	case reflect.Map:
		*n++
		k := "k" + strconv.Itoa(*n)
		v.Set(reflect.MakeMap(v.Type()))
		e := reflect.New(v.Type().Elem()).Elem()
		out := fill(e, append(slices.Clone(path), k), metric, n)
		v.SetMapIndex(reflect.ValueOf(k), e)
		return out
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		return fill(v.Index(0), append(slices.Clone(path), "0"), metric, n)
	case reflect.Array:
		var out []leaf
		for i := range v.Len() {
			out = append(out, fill(v.Index(i), append(slices.Clone(path), strconv.Itoa(i)), metric, n)...)
		}
		return out
	}
	*n++
	l := leaf{path: path, metric: metric, value: float64(*n)}
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n))
	case reflect.Bool:
		v.SetBool(true)
		l.value = 1
	case reflect.String:
		v.SetString("s" + strconv.Itoa(*n))
	}
	return []leaf{l}
}

// TestStatsReachBothEndpoints fills every field of the /stats snapshots
// (the engine's and the data plane's, with the types of reuse, nic,
// bufring, bpf and stack they hold) with a value of its own, and checks
// that each is in the /stats document under its JSON keys and, unless
// its tag says metric:"-", in a /metrics series of the metric its tag
// names with that value. A field added to any of those types without a
// metric tag (or, for another package's type, a foreignTags entry) fails
// here.
func TestStatsReachBothEndpoints(t *testing.T) {
	var s stats.Stats
	var n int
	leaves := fill(reflect.ValueOf(&s).Elem(), nil, "", &n)

	rec := httptest.NewRecorder()
	statsHandler(func() stats.Stats { return s }).ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	var doc any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(snapshotCollector{snapshot: func() stats.Stats { return s }})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string][]float64{} // values by metric name
	for _, f := range fams {
		if metricHelp[f.GetName()] == "" {
			t.Errorf("metric %s has no help in metricHelp", f.GetName())
		}
		for _, m := range f.GetMetric() {
			series[f.GetName()] = append(series[f.GetName()], m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
	}

	used := map[string]bool{}
	for _, l := range leaves {
		where := strings.Join(l.path, "/")
		var got any = doc
		for _, k := range l.path {
			if o, ok := got.(map[string]any); ok {
				got = o[k]
			} else if a, ok := got.([]any); ok {
				i, _ := strconv.Atoi(k)
				got = a[i]
			}
		}
		switch g := got.(type) {
		case float64:
			if g != l.value {
				t.Errorf("/stats %s = %v, want %v", where, g, l.value)
			}
		case bool, string:
		default:
			t.Errorf("/stats has no %s (%v)", where, got)
		}
		switch l.metric {
		case "-":
		case "":
			t.Errorf("%s has no metric tag: it is not on /metrics", where)
		default:
			used[l.metric] = true
			if !slices.Contains(series[l.metric], l.value) {
				t.Errorf("%s (%v) is not in /metrics %s: %v", where, l.value, l.metric, series[l.metric])
			}
		}
	}
	for name := range metricHelp {
		if !used[name] {
			t.Errorf("metricHelp has %s, which no snapshot field names", name)
		}
	}
	t.Logf("%d fields, %d of them on /metrics in %d metrics", len(leaves), len(slices.DeleteFunc(leaves, func(l leaf) bool { return l.metric == "-" })), len(used))
}
