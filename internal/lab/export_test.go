package lab

import "github.com/vishvananda/netns"

// Unexported functions the external tests (package lab_test) check.
var (
	CreatorPID = creatorPID
	GetFeature = getFeature
)

// Where the lab's namespaces live and how their names start.
const (
	NetnsDir   = netnsDir
	NamePrefix = namePrefix
)

// Normalize applies the defaults and checks o.
func (o *Options) Normalize() error { return o.normalize() }

// Handle is n's namespace handle.
func (n *NS) Handle() netns.NsHandle {
	n.handleMu.RLock()
	defer n.handleMu.RUnlock()
	return n.handle
}
