// Package stats is the engine's typed snapshot and the live counters it is
// read from. The code counts in [Counter] and [Vec] (atomics, never a
// Prometheus registry); [Counters.Snapshot] reads them into an
// [EngineStats], which with the data plane's dataplane.Stats makes the
// [Stats] document that /stats serves and /metrics is made from (package
// admin). The struct tags say where each field goes: json its /stats key,
// metric its Prometheus series, by the labels of a map's keys.
//
// It holds numbers only: it knows no sockets, servers, pools or HTTP, and
// imports only the packages whose snapshot types Stats holds.
package stats
