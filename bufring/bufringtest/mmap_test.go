package bufringtest

import (
	"os"
	"testing"
)

func TestRegion(t *testing.T) {
	b := Region(t, 4, 4096)
	if len(b) != 4*4096 {
		t.Fatalf("len %d", len(b))
	}
	if uintptrOf(b)%uintptr(os.Getpagesize()) != 0 {
		t.Fatal("region not page aligned")
	}
	b[len(b)-1] = 1 // writable to the end
	if _, _, err := MapAnonymous(0); err == nil {
		t.Fatal("MapAnonymous(0) succeeded")
	}
}
