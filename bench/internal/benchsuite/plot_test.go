package benchsuite

import (
	"math"
	"testing"
	"time"
)

// TestPlotSkipsNonFiniteLines: a series whose values are NaN (its runs
// skipped or failed) is left out of the plots; gonum's tick search would
// never end on it, which hung the suite.
func TestPlotSkipsNonFiniteLines(t *testing.T) {
	r := &Report{Series: []Series{
		{Name: "skipped", Unit: "ratio", Points: [][2]float64{{0, math.NaN()}, {1, math.NaN()}}},
		{Name: "measured", Unit: "ratio", Points: [][2]float64{{0, 0.5}, {1, 0.9}}},
		{Name: "alone", Unit: "rate", Points: [][2]float64{{0, math.Inf(1)}}},
	}}
	done := make(chan error, 1)
	go func() { done <- r.Plot(t.TempDir()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Plot did not return")
	}
	if len(r.Plots) != 1 {
		t.Fatalf("plots %q, want only the ratio figure with its finite line", r.Plots)
	}
}
