package bufringtest

import (
	"fmt"
	"syscall"
	"testing"
)

// MapAnonymous returns a private anonymous mapping of size bytes, page
// aligned like a UMEM region, and the function that unmaps it. The caller
// owns the mapping and must not touch it after unmapping.
func MapAnonymous(size int) (region []byte, unmap func() error, err error) {
	if size <= 0 {
		return nil, nil, fmt.Errorf("bufringtest: mapping of %d bytes", size)
	}
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("bufringtest: mmap %d bytes: %w", size, err)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}

// Region maps frames*frameSize anonymous bytes for a test and unmaps them
// when the test ends.
func Region(t testing.TB, frames, frameSize int) []byte {
	t.Helper()
	b, unmap, err := MapAnonymous(frames * frameSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmap(); err != nil {
			t.Errorf("munmap: %v", err)
		}
	})
	return b
}
