// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_netguard - sample "netguard" traffic classifier for Endpoint Testbed.
 *
 * !!! NEVER LOAD THIS MODULE ON A REAL MACHINE.  Only inside disposable
 * guest VMs: together with the sample sensor (samples/linux-sensor, 1.1.0 and
 * later) it cuts the machine off the network.
 *
 * Traffic classification: every inbound IPv4 and IPv6 packet is classified by
 * protocol and port at PRE_ROUTING (mangle priority) and its class is written
 * into the packet's mark, where the rest of the stack finds it without
 * classifying again: tc and routing policies (fwmark rules), nftables
 * counters, and the agent's own shaping.  The mark layout is netguard's:
 *
 *   bits 8-11   class (NG_CLASS_*)
 *   bit  15     NG_MARK_CLASSIFIED: netguard has classified this packet
 *
 * Other bits are kept.  Loopback traffic is not classified.  Alone, nothing
 * changes for the machine: marks are labels, and nothing in a stock system
 * acts on bits 8-15.
 *
 * That assumption is netguard's half of the 2010 incident (one OS + product
 * combination was untested and machines booted but lost networking): the
 * mark is one 32-bit field shared by everything on the host, and the sample
 * sensor's network containment takes bit 15 for its own "contained" verdict,
 * dropping every packet that carries it.  Each product reserved the bit
 * without asking the other.
 *
 * Status under /sys/module/testbed_netguard/parameters (read-only):
 * classifying (1 while the hooks are registered), packets_classified, and
 * per class: interactive, web, infra, icmp, other.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/net_namespace.h>

#ifndef NG_VERSION
#define NG_VERSION "0.0.0-dev"
#endif

#define NG_MARK_CLASSIFIED	0x8000
#define NG_CLASS_SHIFT		8
#define NG_MARK_MASK		0xff00	/* the bits netguard writes */

enum ng_class {
	NG_CLASS_INTERACTIVE = 1,	/* ssh, telnet, rdp */
	NG_CLASS_WEB = 2,		/* http, https */
	NG_CLASS_INFRA = 3,		/* dns, dhcp, ntp */
	NG_CLASS_ICMP = 4,		/* icmp, icmpv6 */
	NG_CLASS_OTHER = 5,
	NG_CLASSES
};

static unsigned int classifying;
static atomic_t packets_classified = ATOMIC_INIT(0);
static atomic_t class_packets[NG_CLASSES];

static int ng_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops ng_ro_uint_ops = {
	.set = ng_param_set_ro,
	.get = param_get_uint,
};

static int ng_param_get_atomic(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops ng_ro_atomic_ops = {
	.set = ng_param_set_ro,
	.get = ng_param_get_atomic,
};

module_param_cb(classifying, &ng_ro_uint_ops, &classifying, 0444);
MODULE_PARM_DESC(classifying, "1 while inbound traffic is classified (read-only)");
module_param_cb(packets_classified, &ng_ro_atomic_ops, &packets_classified, 0444);
MODULE_PARM_DESC(packets_classified, "Inbound packets classified since load (read-only)");
module_param_cb(interactive, &ng_ro_atomic_ops, &class_packets[NG_CLASS_INTERACTIVE], 0444);
MODULE_PARM_DESC(interactive, "Packets classified interactive: ssh, telnet, rdp (read-only)");
module_param_cb(web, &ng_ro_atomic_ops, &class_packets[NG_CLASS_WEB], 0444);
MODULE_PARM_DESC(web, "Packets classified web: http, https (read-only)");
module_param_cb(infra, &ng_ro_atomic_ops, &class_packets[NG_CLASS_INFRA], 0444);
MODULE_PARM_DESC(infra, "Packets classified infrastructure: dns, dhcp, ntp (read-only)");
module_param_cb(icmp, &ng_ro_atomic_ops, &class_packets[NG_CLASS_ICMP], 0444);
MODULE_PARM_DESC(icmp, "Packets classified icmp (read-only)");
module_param_cb(other, &ng_ro_atomic_ops, &class_packets[NG_CLASS_OTHER], 0444);
MODULE_PARM_DESC(other, "Packets of no other class (read-only)");

static enum ng_class ng_class_of_port(u8 proto, u16 port)
{
	switch (port) {
	case 22: case 23: case 3389:
		return proto == IPPROTO_TCP ? NG_CLASS_INTERACTIVE : NG_CLASS_OTHER;
	case 80: case 443: case 8080:
		return NG_CLASS_WEB;
	case 53: case 67: case 68: case 123:
		return NG_CLASS_INFRA;
	default:
		return NG_CLASS_OTHER;
	}
}

/* Classify by the transport header at @offset; the lower of the two ports names the service. */
static enum ng_class ng_classify_transport(const struct sk_buff *skb, u8 proto, unsigned int offset)
{
	__be16 ports[2], *pp;
	u16 sport, dport;

	switch (proto) {
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return NG_CLASS_ICMP;
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		break;
	default:
		return NG_CLASS_OTHER;
	}
	/* TCP and UDP both start with source port, destination port. */
	pp = skb_header_pointer(skb, offset, sizeof(ports), ports);
	if (!pp)
		return NG_CLASS_OTHER;
	sport = ntohs(pp[0]);
	dport = ntohs(pp[1]);
	return ng_class_of_port(proto, min(sport, dport));
}

static enum ng_class ng_classify(const struct sk_buff *skb, u8 pf)
{
	if (pf == NFPROTO_IPV4) {
		const struct iphdr *iph = ip_hdr(skb);

		if (ntohs(iph->frag_off) & IP_OFFSET)
			return NG_CLASS_OTHER;	/* a later fragment carries no ports */
		return ng_classify_transport(skb, iph->protocol, skb_network_offset(skb) + iph->ihl * 4);
	}
	/* IPv6: the next header only; extension headers are classified as other. */
	return ng_classify_transport(skb, ipv6_hdr(skb)->nexthdr,
				     skb_network_offset(skb) + sizeof(struct ipv6hdr));
}

static unsigned int ng_hook(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	enum ng_class class;

	if (state->in && (state->in->flags & IFF_LOOPBACK))
		return NF_ACCEPT;
	class = ng_classify(skb, state->pf);
	skb->mark = (skb->mark & ~NG_MARK_MASK) | NG_MARK_CLASSIFIED | (class << NG_CLASS_SHIFT);
	atomic_inc(&class_packets[class]);
	if (atomic_inc_return(&packets_classified) == 1)
		pr_info("first inbound packet classified: class %d, mark %#x on %s\n", class, skb->mark,
			state->in ? state->in->name : "?");
	return NF_ACCEPT;
}

static const struct nf_hook_ops ng_ops[] = {
	{ .hook = ng_hook, .pf = NFPROTO_IPV4, .hooknum = NF_INET_PRE_ROUTING,
	  .priority = NF_IP_PRI_MANGLE },
	{ .hook = ng_hook, .pf = NFPROTO_IPV6, .hooknum = NF_INET_PRE_ROUTING,
	  .priority = NF_IP6_PRI_MANGLE },
};

static int __net_init ng_net_init(struct net *net)
{
	return nf_register_net_hooks(net, ng_ops, ARRAY_SIZE(ng_ops));
}

static void __net_exit ng_net_exit(struct net *net)
{
	nf_unregister_net_hooks(net, ng_ops, ARRAY_SIZE(ng_ops));
}

static struct pernet_operations ng_net_ops = {
	.init = ng_net_init,
	.exit = ng_net_exit,
};

static int __init ng_init(void)
{
	int ret = register_pernet_subsys(&ng_net_ops);

	if (ret) {
		pr_err("cannot hook netfilter: %d\n", ret);
		return ret;
	}
	classifying = 1;
	pr_info("netguard %s: classifying inbound traffic (marks: class in bits 8-11, bit 15 = classified)\n",
		NG_VERSION);
	return 0;
}

static void __exit ng_exit(void)
{
	unregister_pernet_subsys(&ng_net_ops);
	classifying = 0;
	pr_info("netguard stopped\n");
}

module_init(ng_init);
module_exit(ng_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Endpoint Testbed");
MODULE_DESCRIPTION("Sample traffic classifier that labels inbound packets in skb->mark (testing only)");
MODULE_VERSION(NG_VERSION);
