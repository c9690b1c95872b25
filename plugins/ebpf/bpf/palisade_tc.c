// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0
//
// Palisade's TC classifier: the policy of one endpoint in one direction,
// read from maps (no program is generated per policy).
//
// Attached by the host to the node-side veth of each endpoint: TC ingress
// of that veth carries what the pod sends (its egress, program `egress`),
// TC egress carries what the pod receives (its ingress, program `ingress`).
//
// Per packet (IPv4 TCP, UDP or SCTP; anything else passes untouched):
//   1. `flows` (LRU): a packet of a connection this stage already allowed,
//      or a reply to a connection the opposite stage allowed, passes.
//   2. `endpoints`: the local address (destination for ingress, source for
//      egress) gives the endpoint id. Not an endpoint: allowed.
//   3. `peers` (LPM trie, key endpoint . direction . remote address): the
//      peer class of the remote address and the class's verdict for ports
//      no ranged rule covers. No entry: the endpoint has no policy in this
//      direction: allowed.
//   4. `ports` (LPM trie, key endpoint . class . direction . protocol .
//      destination port): the verdict for the port range, if any.
// The plugin precomputes the verdicts from the tiers (see
// docs/ebpf-backend.md), so the program has no loop: the verifier puts no
// bound on rules, tiers or ranges; map sizes do.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DIR_INGRESS 0
#define DIR_EGRESS 1
#define VERDICT_ALLOW 1
#define VERDICT_DENY 2

// Network byte order for addresses and ports; endpoint ids and classes in
// the machine's order.
struct peer_key {
	__u32 prefixlen; // 64 + CIDR bits
	__u32 endpoint;
	__u8 direction;
	__u8 pad[3];
	__u32 addr;
};

struct peer_val {
	__u32 class;
	__u32 verdict;
};

struct port_key {
	__u32 prefixlen; // 80 + port prefix bits
	__u32 endpoint;
	__u32 class;
	__u8 direction;
	__u8 protocol;
	__u16 port;
};

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 stage;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 65536);
} pl_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct peer_key);
	__type(value, struct peer_val);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pl_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct port_key);
	__type(value, __u32);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, __u32);
	__uint(max_entries, 262144);
} pl_flows SEC(".maps");

static __always_inline int judge(struct __sk_buff *skb, __u8 stage)
{
	struct iphdr ip;
	__u16 l4[2];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return TC_ACT_SHOT;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP &&
	    ip.protocol != IPPROTO_SCTP)
		return TC_ACT_UNSPEC;
	// A later fragment carries no ports; its first fragment was judged.
	if (ip.frag_off & bpf_htons(0x1fff))
		return TC_ACT_UNSPEC;
	if (ip.ihl < 5)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, l4, sizeof(l4)) < 0)
		return TC_ACT_SHOT;

	struct flow_key fk = {
		.saddr = ip.saddr, .daddr = ip.daddr, .sport = l4[0], .dport = l4[1],
		.protocol = ip.protocol, .stage = stage,
	};
	if (bpf_map_lookup_elem(&pl_flows, &fk))
		return TC_ACT_UNSPEC;
	struct flow_key rk = {
		.saddr = ip.daddr, .daddr = ip.saddr, .sport = l4[1], .dport = l4[0],
		.protocol = ip.protocol, .stage = stage ^ 1,
	};
	if (bpf_map_lookup_elem(&pl_flows, &rk))
		return TC_ACT_UNSPEC;

	__u32 local = stage == DIR_INGRESS ? ip.daddr : ip.saddr;
	__u32 remote = stage == DIR_INGRESS ? ip.saddr : ip.daddr;
	__u32 *endpoint = bpf_map_lookup_elem(&pl_endpoints, &local);
	if (endpoint) {
		struct peer_key pk = {
			.prefixlen = 64 + 32, .endpoint = *endpoint, .direction = stage,
			.addr = remote,
		};
		struct peer_val *peer = bpf_map_lookup_elem(&pl_peers, &pk);
		if (peer) {
			__u32 verdict = peer->verdict;
			struct port_key ok = {
				.prefixlen = 80 + 16, .endpoint = *endpoint, .class = peer->class,
				.direction = stage, .protocol = ip.protocol, .port = l4[1],
			};
			__u32 *ranged = bpf_map_lookup_elem(&pl_ports, &ok);
			if (ranged)
				verdict = *ranged;
			if (verdict != VERDICT_ALLOW)
				return TC_ACT_SHOT;
		}
	}
	__u32 seen = 1;
	bpf_map_update_elem(&pl_flows, &fk, &seen, BPF_ANY);
	return TC_ACT_UNSPEC;
}

SEC("classifier/ingress")
int pl_ingress(struct __sk_buff *skb)
{
	return judge(skb, DIR_INGRESS);
}

SEC("classifier/egress")
int pl_egress(struct __sk_buff *skb)
{
	return judge(skb, DIR_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
