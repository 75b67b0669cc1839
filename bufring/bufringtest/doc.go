// Package bufringtest provides test helpers for code built on bufring.
//
// It owns only test memory (anonymous mappings standing in for a UMEM);
// it knows nothing of sockets or of the pools' internals.
package bufringtest
