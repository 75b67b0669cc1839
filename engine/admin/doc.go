// Package admin is the admin endpoint: /metrics (Prometheus), /stats (JSON,
// read by `xdpnet stats`) and /healthz, on a kernel socket, to GET and HEAD
// only. Both /stats and /metrics are made from one typed snapshot
// (stats.Stats): the collector walks it by its struct tags (for other
// packages' types, foreignTags), so every figure in one is in the other.
//
// It serves numbers someone else counted: it must not know how requests
// are proxied, how frontends accept or backends dial. It imports package
// stats, the Prometheus client and, for foreignTags, the snapshot types of
// the packages whose figures the snapshot holds (dataplane, reuse, nic,
// bufring, bpf, stack).
package admin
