// Package config is the gateway's configuration: its types, their
// defaults and validation, and the YAML they are read from ([Load],
// [Parse]). Every problem is a [FieldError] naming its field (a path such
// as "backends[0].servers[1].address"); one configuration's problems come
// together as [Errors], and all wrap [ErrInvalid]. [Demo] is the commented
// example `xdpnet demo` runs (demo.yaml, embedded); [Config.DataPlane] is
// the part the AF_XDP data plane takes (dataplane.Config).
//
// It knows values, not running things: no sockets, pools, servers or HTTP
// serving. The packages that run a configuration (engine and those below
// it) read it; nothing here imports them.
package config
