// Command xdpnet runs the xdpnet gateway.
//
//	xdpnet run -c FILE      run the gateway on a configuration file
//	xdpnet demo             build a veth lab, run the engine under a bounded load, print a summary
//	xdpnet stats            print the counters of a running gateway (its admin endpoint)
//	xdpnet origin           a small HTTP/3 and raw-stream origin server for labs
//
// Exit status: 0 on success, 1 on a run-time failure, 2 on bad usage or a bad
// configuration.
//
// It owns the command line (flags, exit codes, the demo's presentation); the
// gateway itself is package engine, and nothing here touches rings or frames.
package main
