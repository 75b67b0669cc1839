// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// XDP steering program: frames addressed to the engine go to the AF_XDP
// socket of the queue they arrived on, everything else to the kernel.
//
// Addressed to the engine means: IPv4 or IPv6 unicast to one of its
// addresses, ARP whose target protocol address is one of its IPv4 addresses,
// and IPv6 neighbour solicitations (RFC 4861 section 4.3) whose target is one
// of its IPv6 addresses, also when sent to the solicited-node multicast group.
// Every frame is counted exactly once in one of the per-CPU counters of the
// queue it arrived on (counters), or, past the queues the map was sized for,
// in other_queue_counters.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Keep in sync with steering.go.
enum steer_counter {
	COUNTER_REDIRECTED = 0, // sent to the queue's AF_XDP socket
	COUNTER_PASSED = 1,     // not for the engine: given to the kernel
	COUNTER_NO_SOCKET = 2,  // for the engine, but no socket on the queue: given to the kernel
	COUNTER_MALFORMED = 3,  // truncated or inconsistent header: given to the kernel
	COUNTER_MAX = 4,
};

// An engine address. IPv4 addresses are stored as IPv4-mapped IPv6
// addresses with family 4, so ::ffff:a.b.c.d in an IPv6 header never
// matches an IPv4 engine address.
struct addr_key {
	__u8 family; // 4 or 6
	__u8 pad[3];
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64); // resized at load time
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256); // resized at load time
	__type(key, struct addr_key);
	__type(value, __u8);
} addrs SEC(".maps");

// Counter c of queue q is at q * COUNTER_MAX + c.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64 * COUNTER_MAX); // resized at load time
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Frames of queues beyond those of counters.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} other_queue_counters SEC(".maps");

// ARP for IPv4 over Ethernet (RFC 826).
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

// ICMPv6 neighbour solicitation without options (RFC 4861 section 4.3).
struct nd_solicit {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 reserved;
	__u8 target[16];
};

#define ICMPV6_NEIGHBOUR_SOLICITATION 135

static __always_inline int count(struct xdp_md *ctx, __u32 counter, int action)
{
	__u32 key = ctx->rx_queue_index * COUNTER_MAX + counter;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);
	if (!v)
		v = bpf_map_lookup_elem(&other_queue_counters, &counter);
	if (v)
		*v += 1;
	return action;
}

static __always_inline int is_engine_v4(const void *a)
{
	struct addr_key k = {.family = 4};
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], a, 4);
	return bpf_map_lookup_elem(&addrs, &k) != NULL;
}

static __always_inline int is_engine_v6(const void *a)
{
	struct addr_key k = {.family = 6};
	__builtin_memcpy(k.addr, a, 16);
	return bpf_map_lookup_elem(&addrs, &k) != NULL;
}

static __always_inline int to_socket(struct xdp_md *ctx)
{
	// With no socket in the queue's slot, bpf_redirect_map returns the
	// lower bits of its flags: XDP_PASS.
	int act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	return count(ctx, act == XDP_REDIRECT ? COUNTER_REDIRECTED : COUNTER_NO_SOCKET, act);
}

SEC("xdp")
int xdpnet_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return count(ctx, COUNTER_MALFORMED, XDP_PASS);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP): {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return count(ctx, COUNTER_MALFORMED, XDP_PASS);
		if (is_engine_v4(&ip->daddr))
			return to_socket(ctx);
		break;
	}
	case bpf_htons(ETH_P_ARP): {
		struct arp_eth *arp = (void *)(eth + 1);
		if ((void *)(arp + 1) > end)
			return count(ctx, COUNTER_MALFORMED, XDP_PASS);
		if (arp->htype == bpf_htons(1) && arp->ptype == bpf_htons(ETH_P_IP) &&
		    arp->hlen == 6 && arp->plen == 4 && is_engine_v4(arp->tpa))
			return to_socket(ctx);
		break;
	}
	case bpf_htons(ETH_P_IPV6): {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return count(ctx, COUNTER_MALFORMED, XDP_PASS);
		if (is_engine_v6(&ip6->daddr))
			return to_socket(ctx);
		// A solicitation for an engine address is sent to its
		// solicited-node group (or unicast, handled above).
		if (ip6->daddr.in6_u.u6_addr8[0] == 0xff && ip6->nexthdr == IPPROTO_ICMPV6) {
			struct nd_solicit *ns = (void *)(ip6 + 1);
			if ((void *)&ns->checksum > end)
				return count(ctx, COUNTER_MALFORMED, XDP_PASS);
			if (ns->type != ICMPV6_NEIGHBOUR_SOLICITATION)
				break;
			if ((void *)(ns + 1) > end)
				return count(ctx, COUNTER_MALFORMED, XDP_PASS);
			if (is_engine_v6(ns->target))
				return to_socket(ctx);
		}
		break;
	}
	}
	return count(ctx, COUNTER_PASSED, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
