// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// Live-frames generator: run through BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES, it sends the test frame out of the ingress
// interface (XDP_TX) once per run, up to a budget: runs past it drop the
// frame, so a batch the kernel re-runs after an interrupted syscall never
// sends more than asked. The run counter is one atomic counter, not a
// per-CPU one, for that reason. With flows > 1 the program rewrites the UDP
// source port per frame, round-robin over base_port .. base_port+flows-1,
// updating the checksum incrementally (RFC 1624). In live-frames mode a page
// keeps the program's writes when it is recycled, so the rewrite always
// starts from a consistent frame.

#include <linux/bpf.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Keep in sync with generator.go.
struct gen_config {
	__u64 limit;      // runs with a sequence number from here on drop the frame
	__u32 udp_offset; // of the UDP header in the frame
	__u32 flows;      // source ports to spread over; 0 or 1: no rewrite
	__u16 base_port;  // host order
	__u16 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_runs SEC(".maps");

#define MAX_UDP_OFFSET 128

static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
	__u32 sum = (__u16)~check + (__u16)~old + (__u32) new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

SEC("xdp")
int xdpnet_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *runs = bpf_map_lookup_elem(&gen_runs, &zero);
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_cfg, &zero);
	if (!runs || !cfg)
		return XDP_ABORTED;
	__u64 seq = __sync_fetch_and_add(runs, 1);
	if (seq >= cfg->limit)
		return XDP_DROP;
	__u32 flows = cfg->flows;
	if (flows <= 1)
		return XDP_TX;

	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 off = cfg->udp_offset;
	if (off > MAX_UDP_OFFSET)
		return XDP_ABORTED;
	struct udphdr *udp = data + off;
	if ((void *)(udp + 1) > end)
		return XDP_ABORTED;

	__u16 port = bpf_htons((__u16)(cfg->base_port + (__u32)(seq % flows)));
	__u16 old = udp->source;
	if (old == port)
		return XDP_TX;
	udp->source = port;
	// Zero means "no checksum" for UDP over IPv4: leave it so.
	if (udp->check) {
		__u16 c = csum_replace16(udp->check, old, port);
		udp->check = c ? c : 0xffff;
	}
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
