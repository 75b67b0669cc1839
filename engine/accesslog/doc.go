// Package accesslog writes the gateway's access log: one slog JSON line per
// request ([Entry]), to stdout or a file, from one goroutine fed by a
// bounded queue. The data path never waits for it: [Logger.Log] hands the
// entry over or, when the queue is full, drops it and counts the drop
// (xdpnet_access_log_dropped_total). [Logger.Reopen] reopens the file, for
// log rotation (the engine calls it on SIGHUP).
//
// It knows slog and files; it must not know HTTP serving, frontends or
// backends beyond the fields of an Entry.
package accesslog
