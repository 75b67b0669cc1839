package engine

import _ "embed"

// DemoConfig is the configuration `xdpnet demo` runs: two dedicated queues
// (one per lab veth), http, h3 and tcp frontends, two origins.
//
//go:embed demo.yaml
var DemoConfig string
