package benchsuite

// LabDUTs are the devices under test of the RFC 2544 searches on the veth
// lab (or on the NIC named by XDPNET_HW_IFACE).
func LabDUTs() []DUT {
	return []DUT{}
}
