// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//
// Tabby's tc program: one object, two entry points attached through tc clsact on every endpoint
// interface (tabby_tc_ingress on the tc ingress hook, tabby_tc_egress on the tc egress hook).
//
// Per packet: endpoint lookup by ifindex (unknown interface: drop, fail closed) -> parse IPv4 and
// TCP/UDP/ICMP (IPv6: handle6, the same steps with IPv6's own conntrack map and address trie)
// -> host endpoints only: traffic not to or from the host passes (forwarded) ->
// conntrack (a live entry skips policy) -> failsafe ports (host endpoints only) -> policy verdict
// from maps -> on allow, create the conntrack entry.
//
// The policy is data, not code (docs/dataplanes.md, "eBPF"): user space reduces an endpoint's
// whole policy (tiers, policies, rules, profiles) per direction to a "policy program" id and three
// tables, so the per-packet cost is the same three lookups whatever the number of rules:
//   tabby_ports    LPM (program, protocol, port or ICMP type<<8|code) -> port class
//   tabby_addrs    LPM (program, peer address)                        -> address class
//   tabby_verdicts hash (program, port class, address class)          -> action, rule
// A verdict key not present falls back to (program, ANY, ANY), the program's default; a program
// with no entries at all drops. Source ports are a further dimension, paid only where a rule names
// them: a port class with TABBY_CLASS_BY_SPORT set is refined by one more lookup (see
// "Source ports" below) into the port class the verdict table knows.
//
// Built CO-RE against the running kernel's types: vmlinux.h is written from /sys/kernel/btf/vmlinux
// at build time (Plugins/BPFCompiler), and its structs carry preserve_access_index, so every field
// access to the __sk_buff context and to packet headers is a CO-RE relocation that libbpf checks and
// resolves against the BTF of the kernel the object is loaded on. Packet header fields that the
// kernel declares as bitfields (IPv4 header length, TCP flags) are read as the wire-format bytes
// they are. The byte layouts of every map key and value below are mirrored in Swift
// (Modules/TabbyEBPF/TCProgram.swift) and pinned by unit tests.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// vmlinux.h carries types and enums, not the UAPI headers' #defines: the few used here.
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMPV6 58
// IPv6 extension headers the parser walks (at most IPV6_MAX_EXTENSIONS of them).
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define IPV6_MAX_EXTENSIONS 4
#define IPV6_FRAGMENT_OFFSET 0xfff8 // of the fragment header's offset field (network order: bpf_htons)
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_ROUTER_SOLICIT 133 // 133-137: neighbour discovery (router and neighbour solicitation and
#define ICMPV6_REDIRECT 137       // advertisement, redirect), passed like ARP
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define IP_FRAGMENT_OFFSET 0x1fff

// Endpoint flags.
#define TABBY_EP_HOST 1 // a host endpoint: hooks in natural direction, failsafe ports apply

// Which policy direction a hook enforces depends on the endpoint kind: on a workload's host-side
// veth, tc ingress sees packets *from* the workload (its egress policy), tc egress packets *to*
// it (its ingress policy). On a host interface the hooks keep their natural direction.
#define HOOK_TC_INGRESS 0
#define HOOK_TC_EGRESS 1
#define POLICY_INGRESS 0
#define POLICY_EGRESS 1

#define TABBY_CLASS_ANY 0xffffffffu

#define TABBY_ACTION_ALLOW 1
#define TABBY_ACTION_DENY 2

// Conntrack states.
#define CT_TCP_SYN_SENT 1
#define CT_TCP_ESTABLISHED 2
#define CT_TCP_CLOSING 3 // FIN seen
#define CT_TCP_RESET 4
#define CT_UDP 5
#define CT_ICMP 6
#define CT_OTHER 7

// Counter indices (tabby_counters), read by tests and `status()`.
enum {
    CNT_CT_HIT = 0,         // passed on a live conntrack entry
    CNT_POLICY_ALLOW = 1,   // new flow allowed by policy
    CNT_POLICY_DENY = 2,    // new flow denied by policy (or by a program's default)
    CNT_UNKNOWN_IF = 3,     // no endpoint for this ifindex: dropped (fail closed)
    CNT_FAILSAFE = 4,       // allowed by a failsafe port
    CNT_NON_IP = 5,         // ARP and IPv6 neighbour discovery, passed
    CNT_UNSUPPORTED = 6,    // other ethertypes, non-first fragments, IPv6 on host endpoints: dropped
    CNT_MALFORMED = 7,      // truncated headers: dropped
    CNT_NO_PROGRAM = 8,     // the endpoint's policy program has no tables: dropped
    CNT_CT_RELATED = 9,     // an ICMP error about a live flow (unreachable, too big, time exceeded)
    CNT_HOST_FORWARDED = 10, // on a host endpoint, traffic not to or from the host: passed without policy
    CNT_OVERLAY_PEER = 11,  // on a host endpoint, VXLAN from or to another node: passed ahead of policy
    CNT_MAX = 16,
};

struct tabby_endpoint {
    __u32 ingress_program;  // policy program for IPv4 traffic to the endpoint
    __u32 egress_program;   // policy program for IPv4 traffic from the endpoint
    __u32 flags;            // TABBY_EP_*
    __u32 ingress6_program; // the same for IPv6: its own tables (tabby_addrs6 for addresses)
    __u32 egress6_program;
};

// LPM keys: prefixlen (host order) counts the bits of the fields after it, most significant first.
struct tabby_port_key {
    __u32 prefixlen; // 32: program only; 48: program + protocol; 48 + n: n bits of port
    __u32 program;   // big endian
    __u16 protocol;  // big endian (IP protocol number)
    __u16 port;      // big endian: destination port, or ICMP type << 8 | code
};

struct tabby_addr_key {
    __u32 prefixlen; // 32 + CIDR length
    __u32 program;   // big endian
    __u32 addr;      // network order
};

// IPv6 peers: their own trie, so the IPv4 key stays 12 bytes. Ports, source ports and verdicts are
// shared: an endpoint's IPv6 tables are compiled under program ids of their own.
struct tabby_addr6_key {
    __u32 prefixlen; // 32 + CIDR length
    __u32 program;   // big endian
    struct in6_addr addr;
};

struct tabby_verdict_key {
    __u32 program;
    __u32 port_class;
    __u32 addr_class;
};

struct tabby_verdict {
    __u32 action; // TABBY_ACTION_*
    __u32 rule;   // an id user space maps back to tier/policy/rule, for counters and tracing
};

// Source ports (the peer's on ingress, the endpoint's own on egress). A port class from tabby_ports
// with this bit set depends on the source port too: tabby_sports maps (program, that class,
// protocol, source port) to the final port class, in one LPM lookup (the (class, class) -> class
// reduction folded into the trie: each marked class has its own source-port segments). TCP and UDP
// only; every other protocol finds the class's catch-all (64-bit prefix). Classes without the bit
// skip the lookup, so programs without source-port rules pay a bit test.
#define TABBY_CLASS_BY_SPORT 0x80000000u

struct tabby_sport_key {
    __u32 prefixlen;  // 64: program + class; 80: + protocol; 80 + n: n bits of source port
    __u32 program;    // big endian
    __u32 port_class; // big endian, with TABBY_CLASS_BY_SPORT, as tabby_ports holds it
    __u16 protocol;   // big endian (IP protocol number)
    __u16 port;       // big endian: source port
};

struct tabby_failsafe_key {
    __u8 direction; // POLICY_INGRESS (to the host) or POLICY_EGRESS (from the host)
    __u8 protocol;
    __u16 port; // host order
};

// One entry per flow per endpoint interface: both hooks of an interface share it, so the reply to a
// flow an endpoint opened (or accepted) finds the entry its first packet created. Addresses and ports
// are ordered so that (addr_a, port_a) <= (addr_b, port_b) in host order: both directions, one key.
struct tabby_ct_key {
    __u32 ifindex;
    __u32 addr_a; // network order
    __u32 addr_b;
    __u16 port_a; // network order; ICMP echo: the identifier on both sides
    __u16 port_b;
    __u8 protocol;
    __u8 pad[3];
};

// IPv6 flows: the same value and state machine, addresses ordered as 128-bit big-endian numbers.
struct tabby_ct6_key {
    __u32 ifindex;
    struct in6_addr addr_a;
    struct in6_addr addr_b;
    __u16 port_a; // network order; ICMPv6 echo: the identifier on both sides
    __u16 port_b;
    __u8 protocol;
    __u8 pad[3];
};

struct tabby_ct_value {
    __u64 last_seen; // bpf_ktime_get_ns
    __u8 state;      // CT_*
    __u8 opener_is_b; // 1 when the first packet came from side b
    __u8 replied;     // 1 once the side that did not open sent a packet
    __u8 pad[5];
};

// Timeouts in nanoseconds; a zero field means the built-in default (Calico's values).
struct tabby_config {
    __u64 tcp_syn_timeout;
    __u64 tcp_established_timeout;
    __u64 tcp_closing_timeout;
    __u64 tcp_reset_timeout;
    __u64 udp_timeout;
    __u64 icmp_timeout;
    __u64 other_timeout;
};

#define SECONDS 1000000000ull

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32); // ifindex
    __type(value, struct tabby_endpoint);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_endpoints SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 262144);
    __type(key, struct tabby_port_key);
    __type(value, __u32);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 1048576);
    __type(key, struct tabby_addr_key);
    __type(value, __u32);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_addrs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 1048576);
    __type(key, struct tabby_addr6_key);
    __type(value, __u32);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_addrs6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1048576);
    __type(key, struct tabby_verdict_key);
    __type(value, struct tabby_verdict);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_verdicts SEC(".maps");

// Source ports: see TABBY_CLASS_BY_SPORT.
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 1048576);
    __type(key, struct tabby_sport_key);
    __type(value, __u32);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_sports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct tabby_failsafe_key);
    __type(value, __u8);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_failsafe SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, struct tabby_ct_key);
    __type(value, struct tabby_ct_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_ct SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, struct tabby_ct6_key);
    __type(value, struct tabby_ct_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_ct6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tabby_config);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, CNT_MAX);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_counters SEC(".maps");

struct packet {
    __u32 saddr, daddr; // network order
    __u16 sport, dport; // network order (ICMP echo: identifier in both)
    __u16 policy_port;  // host order: destination port, or ICMP type << 8 | code
    __u8 protocol;
    __u8 tcp_flags;     // TCP_FLAG_* below
    __u8 icmp_echo;     // 1 for echo request/reply (tracked), 0 for other ICMP
};

// An IPv6 packet's addresses (its ports and protocol are in a struct packet, whose IPv4 addresses
// stay zero).
struct addresses6 {
    struct in6_addr saddr, daddr;
};

#define F_FIN 1
#define F_SYN 2
#define F_RST 4
#define F_ACK 16

static __always_inline void count(__u32 index)
{
    __u64 *value = bpf_map_lookup_elem(&tabby_counters, &index);
    if (value)
        *value += 1;
}

static __always_inline int verdict(int action, __u32 counter)
{
    count(counter);
    return action;
}

static __always_inline __u64 pick(__u64 configured, __u64 fallback)
{
    return configured ? configured : fallback;
}

static __always_inline __u64 ct_timeout(__u8 state)
{
    __u32 zero = 0;
    struct tabby_config *c = bpf_map_lookup_elem(&tabby_config, &zero);
    struct tabby_config none = {};
    if (!c)
        c = &none;
    switch (state) {
    case CT_TCP_SYN_SENT:
        return pick(c->tcp_syn_timeout, 20 * SECONDS);
    case CT_TCP_ESTABLISHED:
        return pick(c->tcp_established_timeout, 3600 * SECONDS);
    case CT_TCP_CLOSING:
        return pick(c->tcp_closing_timeout, 30 * SECONDS);
    case CT_TCP_RESET:
        return pick(c->tcp_reset_timeout, 40 * SECONDS);
    case CT_UDP:
        return pick(c->udp_timeout, 60 * SECONDS);
    case CT_ICMP:
        return pick(c->icmp_timeout, 5 * SECONDS);
    default:
        return pick(c->other_timeout, 600 * SECONDS);
    }
}

// Fills the conntrack key; returns 1 when the packet's source is side b.
static __always_inline int ct_key(struct tabby_ct_key *key, __u32 ifindex, const struct packet *p)
{
    __u32 s = bpf_ntohl(p->saddr), d = bpf_ntohl(p->daddr);
    __u16 sp = bpf_ntohs(p->sport), dp = bpf_ntohs(p->dport);
    int source_is_b = s > d || (s == d && sp > dp);
    key->ifindex = ifindex;
    key->protocol = p->protocol;
    if (source_is_b) {
        key->addr_a = p->daddr;
        key->port_a = p->dport;
        key->addr_b = p->saddr;
        key->port_b = p->sport;
    } else {
        key->addr_a = p->saddr;
        key->port_a = p->sport;
        key->addr_b = p->daddr;
        key->port_b = p->dport;
    }
    return source_is_b;
}

static __always_inline int is_tcp_syn(const struct packet *p)
{
    return p->protocol == IPPROTO_TCP && (p->tcp_flags & (F_SYN | F_ACK)) == F_SYN;
}

// Fills the IPv6 conntrack key; returns 1 when the packet's source is side b.
static __always_inline int ct6_key(struct tabby_ct6_key *key, __u32 ifindex, const struct packet *p,
                                   const struct addresses6 *a)
{
    int order = 0; // -1: source below destination, 1: above, compared as 128-bit big-endian numbers
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __u32 s = bpf_ntohl(a->saddr.in6_u.u6_addr32[i]), d = bpf_ntohl(a->daddr.in6_u.u6_addr32[i]);
        if (order == 0)
            order = s < d ? -1 : s > d ? 1 : 0;
    }
    int source_is_b = order > 0 || (order == 0 && bpf_ntohs(p->sport) > bpf_ntohs(p->dport));
    key->ifindex = ifindex;
    key->protocol = p->protocol;
    if (source_is_b) {
        key->addr_a = a->daddr;
        key->port_a = p->dport;
        key->addr_b = a->saddr;
        key->port_b = p->sport;
    } else {
        key->addr_a = a->saddr;
        key->port_a = p->sport;
        key->addr_b = a->daddr;
        key->port_b = p->dport;
    }
    return source_is_b;
}

// Returns 1 when a live entry lets the packet through (and refreshes it). `map` is tabby_ct or
// tabby_ct6 and `key` its key: the value and the state machine are the same for both families.
static __always_inline int ct_pass(void *map, void *key, int source_is_b, const struct packet *p, __u64 now)
{
    struct tabby_ct_value *v = bpf_map_lookup_elem(map, key);
    if (!v)
        return 0;
    if (now - v->last_seen > ct_timeout(v->state))
        return 0;
    // A new TCP connection always gets policy, even on a tuple seen before.
    if (is_tcp_syn(p))
        return 0;
    if (source_is_b != v->opener_is_b)
        v->replied = 1;
    if (p->protocol == IPPROTO_TCP) {
        if (p->tcp_flags & F_RST)
            v->state = CT_TCP_RESET;
        else if (p->tcp_flags & F_FIN)
            v->state = CT_TCP_CLOSING;
        else if (v->state == CT_TCP_SYN_SENT && v->replied)
            v->state = CT_TCP_ESTABLISHED;
    }
    v->last_seen = now;
    return 1;
}

static __always_inline void ct_create(void *map, void *key, int source_is_b, const struct packet *p, __u64 now)
{
    struct tabby_ct_value v = {.last_seen = now, .opener_is_b = source_is_b};
    switch (p->protocol) {
    case IPPROTO_TCP:
        if (p->tcp_flags & F_RST)
            v.state = CT_TCP_RESET;
        else if (p->tcp_flags & F_FIN)
            v.state = CT_TCP_CLOSING;
        else if (p->tcp_flags & F_SYN)
            v.state = CT_TCP_SYN_SENT;
        else // picked up mid-flow (an agent restart with a new map, another dataplane before)
            v.state = CT_TCP_ESTABLISHED;
        break;
    case IPPROTO_UDP:
        v.state = CT_UDP;
        break;
    case IPPROTO_ICMP:
        v.state = CT_ICMP;
        break;
    default: // ICMPv6 echo is the only other ICMP tracked
        v.state = p->icmp_echo ? CT_ICMP : CT_OTHER;
    }
    bpf_map_update_elem(map, key, &v, BPF_ANY);
}

// Refines a port class marked TABBY_CLASS_BY_SPORT by the packet's source port; returns 0 when the
// program's tables lack the entry (then the packet drops, as for a program without tables).
static __always_inline int refine_by_sport(__u32 program, const struct packet *p, __u32 *port_class)
{
    int has_ports = p->protocol == IPPROTO_TCP || p->protocol == IPPROTO_UDP;
    struct tabby_sport_key sk = {
        .prefixlen = 96,
        .program = bpf_htonl(program),
        .port_class = bpf_htonl(*port_class),
        .protocol = bpf_htons(p->protocol),
        .port = has_ports ? p->sport : 0, // already network order; ICMP's echo id is no port
    };
    __u32 *refined = bpf_map_lookup_elem(&tabby_sports, &sk);
    if (!refined)
        return 0;
    *port_class = *refined;
    return 1;
}

// The policy verdict for a new flow: three lookups whatever the number of rules (four where the
// destination port's class depends on the source port).
// `addrs` is tabby_addrs or tabby_addrs6, `addr_key` its key for (program, peer address).
static __always_inline int policy_allows(__u32 program, const struct packet *p, void *addrs, const void *addr_key,
                                         __u32 *counter)
{
    struct tabby_port_key pk = {
        .prefixlen = 64,
        .program = bpf_htonl(program),
        .protocol = bpf_htons(p->protocol),
        .port = bpf_htons(p->policy_port),
    };
    __u32 *port_entry = bpf_map_lookup_elem(&tabby_ports, &pk);
    __u32 *addr_class = bpf_map_lookup_elem(addrs, addr_key);
    if (!port_entry || !addr_class) {
        *counter = CNT_NO_PROGRAM;
        return 0;
    }
    __u32 port_class = *port_entry;
    if ((port_class & TABBY_CLASS_BY_SPORT) && !refine_by_sport(program, p, &port_class)) {
        *counter = CNT_NO_PROGRAM;
        return 0;
    }
    struct tabby_verdict_key vk = {.program = program, .port_class = port_class, .addr_class = *addr_class};
    struct tabby_verdict *v = bpf_map_lookup_elem(&tabby_verdicts, &vk);
    if (!v) {
        vk.port_class = TABBY_CLASS_ANY;
        vk.addr_class = TABBY_CLASS_ANY;
        v = bpf_map_lookup_elem(&tabby_verdicts, &vk);
    }
    if (!v) {
        *counter = CNT_NO_PROGRAM;
        return 0;
    }
    if (v->action == TABBY_ACTION_ALLOW) {
        *counter = CNT_POLICY_ALLOW;
        return 1;
    }
    *counter = CNT_POLICY_DENY;
    return 0;
}

// TCP's and UDP's ports (and TCP's flags), the same for both families; -1 when truncated.
static __always_inline int parse_ports(struct packet *p, void *l4, void *end)
{
    if (p->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > end)
            return -1;
        p->sport = tcp->source;
        p->dport = tcp->dest;
        p->policy_port = bpf_ntohs(tcp->dest);
        // Byte 13 of the header holds the flags: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 (F_* above).
        p->tcp_flags = *((__u8 *)tcp + 13) & (F_FIN | F_SYN | F_RST | F_ACK);
        return 0;
    }
    struct udphdr *udp = l4;
    if ((void *)(udp + 1) > end)
        return -1;
    p->sport = udp->source;
    p->dport = udp->dest;
    p->policy_port = bpf_ntohs(udp->dest);
    return 0;
}

// Returns 0 for a packet to police, 1 for one to pass (ARP), 2 for IPv6 (handle6 parses it), -1 to
// drop (with the reason in *counter).
static __always_inline int parse(struct __sk_buff *skb, struct packet *p, __u32 *counter)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) {
        *counter = CNT_MALFORMED;
        return -1;
    }
    if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
        *counter = CNT_NON_IP;
        return 1;
    }
    if (eth->h_proto != bpf_htons(ETH_P_IP)) {
        if (eth->h_proto == bpf_htons(ETH_P_IPV6))
            return 2; // handle6
        *counter = CNT_UNSUPPORTED;
        return -1;
    }
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end) {
        *counter = CNT_MALFORMED;
        return -1;
    }
    __u8 header_words = *(__u8 *)ip & 0x0f; // the low nibble of the first byte: IHL
    if (header_words < 5) {
        *counter = CNT_MALFORMED;
        return -1;
    }
    // Non-first fragments carry no ports to police or track.
    if (ip->frag_off & bpf_htons(IP_FRAGMENT_OFFSET)) {
        *counter = CNT_UNSUPPORTED;
        return -1;
    }
    p->saddr = ip->saddr;
    p->daddr = ip->daddr;
    p->protocol = ip->protocol;
    void *l4 = (void *)ip + header_words * 4;
    switch (ip->protocol) {
    case IPPROTO_TCP:
    case IPPROTO_UDP:
        if (parse_ports(p, l4, end) < 0) {
            *counter = CNT_MALFORMED;
            return -1;
        }
        break;
    case IPPROTO_ICMP: {
        struct icmphdr *icmp = l4;
        if ((void *)(icmp + 1) > end) {
            *counter = CNT_MALFORMED;
            return -1;
        }
        p->policy_port = ((__u16)icmp->type << 8) | icmp->code;
        if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY) {
            p->icmp_echo = 1;
            p->sport = icmp->un.echo.id;
            p->dport = icmp->un.echo.id;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

// The ports of the packet an ICMP or ICMPv6 error quotes (its first 8 transport bytes at `ports`,
// already bounds-checked) into `flow`, whose protocol is set: TCP and UDP ports, or an echo's
// identifier on both sides (`icmp`: the family's ICMP protocol and its echo types). 0 for a
// protocol without a tracked flow.
static __always_inline int quoted_ports(const __u8 *ports, __u8 icmp, __u8 echo_request, __u8 echo_reply,
                                        struct packet *flow)
{
    if (flow->protocol == IPPROTO_TCP || flow->protocol == IPPROTO_UDP) {
        flow->sport = *(__u16 *)ports;
        flow->dport = *(__u16 *)(ports + 2);
        return 1;
    }
    if (flow->protocol != icmp || (ports[0] != echo_request && ports[0] != echo_reply))
        return 0;
    flow->sport = *(__u16 *)(ports + 4); // bytes 4-5 of the echo header: the identifier
    flow->dport = flow->sport;
    return 1;
}

// An ICMP error (destination unreachable, fragmentation needed, time exceeded, parameter problem)
// carries the IPv4 header and first 8 bytes of the packet it is about. Returns 1 when that packet's
// flow has a live conntrack entry on this interface: the error is "related" and passes without
// policy, as netfilter's RELATED does (path MTU discovery depends on it). Nothing is refreshed.
static __always_inline int icmp_error_related(struct __sk_buff *skb, __u32 ifindex, __u64 now)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct iphdr *ip = data + sizeof(struct ethhdr);
    if ((void *)(ip + 1) > end)
        return 0;
    __u32 outer_words = *(__u8 *)ip & 0x0f;
    struct icmphdr *icmp = (void *)ip + outer_words * 4;
    if ((void *)(icmp + 1) > end)
        return 0;
    if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED && icmp->type != ICMP_PARAMETERPROB)
        return 0;
    struct iphdr *inner = (void *)(icmp + 1);
    if ((void *)(inner + 1) > end)
        return 0;
    __u32 inner_words = *(__u8 *)inner & 0x0f;
    if (inner_words < 5)
        return 0;
    __u8 *ports = (void *)inner + inner_words * 4;
    if ((void *)(ports + 8) > end)
        return 0;
    struct packet flow = {.saddr = inner->saddr, .daddr = inner->daddr, .protocol = inner->protocol};
    if (!quoted_ports(ports, IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHOREPLY, &flow))
        return 0;
    struct tabby_ct_key key = {};
    ct_key(&key, ifindex, &flow);
    struct tabby_ct_value *v = bpf_map_lookup_elem(&tabby_ct, &key);
    return v && now - v->last_seen <= ct_timeout(v->state);
}


// ---- Host endpoints: is a packet on a host interface to or from the host itself? ----
//
// A host endpoint's policy covers traffic to the host (tc ingress) and from the host (tc egress),
// not traffic the host forwards (to and from its workloads, or between other interfaces): the IR
// does not model applyOnForward. Two facts decide (docs/dataplanes.md, "Host endpoints"):
// - tabby_host_addrs: the node's own addresses (and the broadcast addresses of its subnets), which
//   user space keeps equal to the namespace's. To the host = the destination is one of them (or
//   multicast); from the host = the source is one of them and the packet did not come from a
//   workload.
// - TABBY_MARK_FROM_WORKLOAD: the program sets this skb->mark bit on every packet a workload sends
//   (tc ingress of its veth). It survives routing and masquerade within the namespace, so a pod's
//   packet leaving with the host's address after natOutgoing is still known as forwarded.

#define TABBY_MARK_FROM_WORKLOAD 0x08000000u

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32); // IPv4 address, network order
    __type(value, __u8);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_host_addrs SEC(".maps");

static __always_inline int is_host_address(__u32 addr)
{
    return bpf_map_lookup_elem(&tabby_host_addrs, &addr) != 0;
}

// 1: the packet is to (hook ingress) or from (hook egress) the host; 0: forwarded through it.
// `mark` is skb->mark, read once by the caller: two reads of the context field in different
// branches let clang share one computed context pointer, which the verifier refuses.
static __always_inline int host_endpoint_traffic(__u32 mark, int hook, const struct packet *p)
{
    if (hook == HOOK_TC_INGRESS)
        return (bpf_ntohl(p->daddr) >> 28) == 0xe || is_host_address(p->daddr);
    return !(mark & TABBY_MARK_FROM_WORKLOAD) && is_host_address(p->saddr);
}

// A workload's packet leaving the host with the host's own source address: natOutgoing masqueraded
// it. Not host endpoint policy's to judge, but its replies come back addressed to the host, so the
// flow is tracked on this interface (they pass by conntrack, before policy).
static __always_inline int masqueraded_from_workload(__u32 mark, int hook, const struct packet *p)
{
    return hook == HOOK_TC_EGRESS && (mark & TABBY_MARK_FROM_WORKLOAD) && is_host_address(p->saddr);
}

// The cluster's other nodes (their underlay addresses) and the VXLAN port: UDP from one of them to
// the port (tc ingress), or from the host to one of them at the port (tc egress), passes on a host
// endpoint ahead of its policy, as Calico allows VXLAN from known hosts. User space fills it from
// the Node resources.
struct tabby_overlay_key {
    __u32 addr; // the other node, network order
    __u16 port; // destination UDP port, host order
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct tabby_overlay_key);
    __type(value, __u8);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} tabby_overlay_peers SEC(".maps");

static __always_inline int overlay_peer(int direction, const struct packet *p)
{
    if (p->protocol != IPPROTO_UDP)
        return 0;
    struct tabby_overlay_key key = {
        .addr = direction == POLICY_INGRESS ? p->saddr : p->daddr,
        .port = p->policy_port,
    };
    return bpf_map_lookup_elem(&tabby_overlay_peers, &key) != 0;
}

// ---- end of host endpoints ----

// ---- IPv6 (workload endpoints) ----
//
// The same steps as IPv4 with IPv6's own conntrack map (tabby_ct6) and address trie (tabby_addrs6),
// under the endpoint's IPv6 policy programs; ports, source ports and verdicts share the IPv4 maps.

// Parses the IPv6 header, up to IPV6_MAX_EXTENSIONS extension headers (hop-by-hop, routing,
// destination options, fragment) and TCP/UDP/ICMPv6. Returns 0 to police, 1 to pass (neighbour
// discovery), -1 to drop (non-first fragments, more extension headers than that, truncated headers).
// *l4_offset: where the transport header starts (from skb->data), for icmp6_error_related.
static __always_inline int parse6(struct __sk_buff *skb, struct packet *p, struct addresses6 *a, __u32 *l4_offset,
                                  __u32 *counter)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
    if ((void *)(ip6 + 1) > end) {
        *counter = CNT_MALFORMED;
        return -1;
    }
    a->saddr = ip6->saddr;
    a->daddr = ip6->daddr;
    __u8 next = ip6->nexthdr;
    __u8 *cursor = (void *)(ip6 + 1);
#pragma unroll
    for (int i = 0; i < IPV6_MAX_EXTENSIONS; i++) {
        if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST && next != NEXTHDR_FRAGMENT)
            break;
        if (cursor + 8 > (__u8 *)end) {
            *counter = CNT_MALFORMED;
            return -1;
        }
        if (next == NEXTHDR_FRAGMENT) {
            // Non-first fragments carry no ports to police or track (as for IPv4).
            if (*(__u16 *)(cursor + 2) & bpf_htons(IPV6_FRAGMENT_OFFSET)) {
                *counter = CNT_UNSUPPORTED;
                return -1;
            }
            next = cursor[0];
            cursor += 8;
        } else {
            next = cursor[0];
            cursor += ((__u32)cursor[1] + 1) * 8;
        }
    }
    if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST || next == NEXTHDR_FRAGMENT) {
        *counter = CNT_UNSUPPORTED; // more extension headers than the program walks
        return -1;
    }
    p->protocol = next;
    *l4_offset = (void *)cursor - data;
    switch (next) {
    case IPPROTO_TCP:
    case IPPROTO_UDP:
        if (parse_ports(p, cursor, end) < 0) {
            *counter = CNT_MALFORMED;
            return -1;
        }
        break;
    case IPPROTO_ICMPV6: {
        // type, code, checksum, then (echo) identifier and sequence.
        if (cursor + 8 > (__u8 *)end) {
            *counter = CNT_MALFORMED;
            return -1;
        }
        __u8 type = cursor[0];
        if (type >= ICMPV6_ROUTER_SOLICIT && type <= ICMPV6_REDIRECT) {
            *counter = CNT_NON_IP; // neighbour discovery: IPv6's ARP
            return 1;
        }
        p->policy_port = ((__u16)type << 8) | cursor[1];
        if (type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY) {
            p->icmp_echo = 1;
            p->sport = *(__u16 *)(cursor + 4);
            p->dport = p->sport;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4 // 1-4: destination unreachable, packet too big, time exceeded, parameter problem

// An ICMPv6 error (types 1-4) quotes the IPv6 header and the start of the packet it is about (at
// offset 8 of the ICMPv6 header). Returns 1 when that packet's flow has a live entry in tabby_ct6 on
// this interface: the error is "related" and passes without policy, as icmp_error_related does for
// IPv4 (path MTU discovery needs packet too big). Only a quoted packet without extension headers is
// recognised; nothing is refreshed. A global function, verified once on its own: inlined, its paths
// multiplied with handle6's past the verifier's budget.
__attribute__((noinline)) int icmp6_error_related(struct __sk_buff *skb, __u32 l4_offset, __u32 ifindex, __u64 now)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    if (l4_offset > 2048) // beyond what parse6 can reach; a bound for the verifier
        return 0;
    __u8 *icmp = data + l4_offset;
    if ((void *)(icmp + 8) > end)
        return 0;
    if (icmp[0] < ICMPV6_DEST_UNREACH || icmp[0] > ICMPV6_PARAMPROB)
        return 0;
    struct ipv6hdr *inner = (void *)(icmp + 8);
    if ((void *)(inner + 1) > end)
        return 0;
    __u8 *ports = (void *)(inner + 1);
    if ((void *)(ports + 8) > end)
        return 0;
    struct packet flow = {.protocol = inner->nexthdr};
    struct addresses6 a = {.saddr = inner->saddr, .daddr = inner->daddr};
    if (!quoted_ports(ports, IPPROTO_ICMPV6, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, &flow))
        return 0;
    struct tabby_ct6_key key = {};
    ct6_key(&key, ifindex, &flow, &a);
    struct tabby_ct_value *v = bpf_map_lookup_elem(&tabby_ct6, &key);
    return v && now - v->last_seen <= ct_timeout(v->state);
}

static __always_inline int handle6(struct __sk_buff *skb, int hook, const struct tabby_endpoint *ep, __u32 ifindex)
{
    // Host endpoints know the host's IPv4 addresses only (tabby_host_addrs): IPv6 on a host
    // interface drops, as before IPv6 came to workloads.
    if (ep->flags & TABBY_EP_HOST)
        return verdict(TC_ACT_SHOT, CNT_UNSUPPORTED);
    struct packet p = {};
    struct addresses6 a = {};
    __u32 counter = 0, l4_offset = 0;
    int parsed = parse6(skb, &p, &a, &l4_offset, &counter);
    if (parsed < 0)
        return verdict(TC_ACT_SHOT, counter);
    if (parsed > 0)
        return verdict(TC_ACT_OK, counter);
    // A workload's veth: tc ingress carries its egress (see handle).
    int direction = hook == HOOK_TC_INGRESS ? POLICY_EGRESS : POLICY_INGRESS;
    if (hook == HOOK_TC_INGRESS)
        skb->mark = skb->mark | TABBY_MARK_FROM_WORKLOAD;
    int tracked = p.protocol != IPPROTO_ICMPV6 || p.icmp_echo;
    __u64 now = bpf_ktime_get_ns();

    struct tabby_ct6_key key = {};
    int source_is_b = ct6_key(&key, ifindex, &p, &a);
    if (tracked && ct_pass(&tabby_ct6, &key, source_is_b, &p, now))
        return verdict(TC_ACT_OK, CNT_CT_HIT);
    if (!tracked && icmp6_error_related(skb, l4_offset, ifindex, now))
        return verdict(TC_ACT_OK, CNT_CT_RELATED);

    __u32 program = direction == POLICY_INGRESS ? ep->ingress6_program : ep->egress6_program;
    struct tabby_addr6_key ak = {
        .prefixlen = 160,
        .program = bpf_htonl(program),
        .addr = direction == POLICY_INGRESS ? a.saddr : a.daddr,
    };
    if (!policy_allows(program, &p, &tabby_addrs6, &ak, &counter))
        return verdict(TC_ACT_SHOT, counter);
    if (tracked)
        ct_create(&tabby_ct6, &key, source_is_b, &p, now);
    return verdict(TC_ACT_OK, counter);
}

// ---- end of IPv6 ----

static __always_inline int handle(struct __sk_buff *skb, int hook)
{
    __u32 ifindex = skb->ifindex;
    struct tabby_endpoint *ep = bpf_map_lookup_elem(&tabby_endpoints, &ifindex);
    if (!ep)
        return verdict(TC_ACT_SHOT, CNT_UNKNOWN_IF);

    struct packet p = {};
    __u32 counter = 0;
    int parsed = parse(skb, &p, &counter);
    if (parsed == 2)
        return handle6(skb, hook, ep, ifindex);
    if (parsed < 0)
        return verdict(TC_ACT_SHOT, counter);
    if (parsed > 0)
        return verdict(TC_ACT_OK, counter);

    int host = ep->flags & TABBY_EP_HOST;
    int direction = (hook == HOOK_TC_INGRESS) == (host != 0) ? POLICY_INGRESS : POLICY_EGRESS;
    // Host endpoints: only traffic to or from the host meets their policy (see above).
    __u32 mark = skb->mark;
    if (!host && hook == HOOK_TC_INGRESS)
        skb->mark = mark | TABBY_MARK_FROM_WORKLOAD;
    int masqueraded = host && masqueraded_from_workload(mark, hook, &p);
    if (host && !masqueraded && !host_endpoint_traffic(mark, hook, &p))
        return verdict(TC_ACT_OK, CNT_HOST_FORWARDED);
    // ICMP other than echo is not tracked itself: an error about a live flow passes as related,
    // anything else gets policy.
    int tracked = p.protocol != IPPROTO_ICMP || p.icmp_echo;
    __u64 now = bpf_ktime_get_ns();

    struct tabby_ct_key key = {};
    int source_is_b = ct_key(&key, ifindex, &p);
    if (tracked && ct_pass(&tabby_ct, &key, source_is_b, &p, now))
        return verdict(TC_ACT_OK, CNT_CT_HIT);
    if (masqueraded) {
        if (tracked)
            ct_create(&tabby_ct, &key, source_is_b, &p, now);
        return verdict(TC_ACT_OK, CNT_HOST_FORWARDED);
    }
    if (!tracked && icmp_error_related(skb, ifindex, now))
        return verdict(TC_ACT_OK, CNT_CT_RELATED);

    if (host && overlay_peer(direction, &p)) {
        ct_create(&tabby_ct, &key, source_is_b, &p, now);
        return verdict(TC_ACT_OK, CNT_OVERLAY_PEER);
    }

    if (host && (p.protocol == IPPROTO_TCP || p.protocol == IPPROTO_UDP)) {
        struct tabby_failsafe_key fk = {.direction = direction, .protocol = p.protocol, .port = p.policy_port};
        if (bpf_map_lookup_elem(&tabby_failsafe, &fk)) {
            ct_create(&tabby_ct, &key, source_is_b, &p, now);
            return verdict(TC_ACT_OK, CNT_FAILSAFE);
        }
    }

    __u32 program = direction == POLICY_INGRESS ? ep->ingress_program : ep->egress_program;
    __u32 peer = direction == POLICY_INGRESS ? p.saddr : p.daddr;
    struct tabby_addr_key ak = {.prefixlen = 64, .program = bpf_htonl(program), .addr = peer};
    if (!policy_allows(program, &p, &tabby_addrs, &ak, &counter))
        return verdict(TC_ACT_SHOT, counter);
    if (tracked)
        ct_create(&tabby_ct, &key, source_is_b, &p, now);
    return verdict(TC_ACT_OK, counter);
}

SEC("tc")
int tabby_tc_ingress(struct __sk_buff *skb)
{
    return handle(skb, HOOK_TC_INGRESS);
}

SEC("tc")
int tabby_tc_egress(struct __sk_buff *skb)
{
    return handle(skb, HOOK_TC_EGRESS);
}

// Every helper used is available to any license; GPL lets the object use the GPL-only ones later.
char LICENSE[] SEC("license") = "Dual BSD/GPL";
