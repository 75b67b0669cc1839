package config

import _ "embed"

// Demo is the configuration `xdpnet demo` runs: two dedicated queues
// (one per lab veth), http, h3 and tcp frontends, two origins.
//
//go:embed demo.yaml
var Demo string
