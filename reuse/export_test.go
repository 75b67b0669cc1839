package reuse

// SetHash replaces the connection hash of p, to force collisions in tests.
func SetHash(p *Pool, f func(*Params) uint64) { p.hash = f }
