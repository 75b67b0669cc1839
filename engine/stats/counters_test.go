package stats

import (
	"reflect"
	"testing"
)

// TestCountersReachSnapshot moves each live counter alone and checks that
// the snapshot shows it: none is left out of Snapshot.
func TestCountersReachSnapshot(t *testing.T) {
	var zero Counters
	empty := zero.Snapshot()
	ct := reflect.TypeFor[Counters]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			var m Counters
			c := reflect.ValueOf(&m).Elem().Field(i).Addr().Interface()
			if v, ok := c.(*Vec); ok {
				c = v.WithLabelValues("a", "b", "c")
			}
			c.(*Counter).Set(7)
			if reflect.DeepEqual(m.Snapshot(), empty) {
				t.Errorf("Counters.%s set to 7; the snapshot does not show it", f.Name)
			}
		})
	}
}
