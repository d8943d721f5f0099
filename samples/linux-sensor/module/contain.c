// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor: network containment (sensor 1.1.0 and later).
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 *
 * When the console contains a host (an incident responder isolates it), the
 * sensor cuts its network.  The verdict is taken once per packet, early, at
 * PRE_ROUTING, and recorded in the packet's mark -- bit 15, TBS_CONTAIN_MARK
 * -- so that later stages act on it without deciding again: LOCAL_IN drops
 * every packet that carries the bit.  Loopback traffic is never contained.
 * The sample never receives a containment order: host_contained stays 0 and
 * the sensor itself never sets the bit.
 *
 * The defect -- the 2010 incident: "one OS + product combination was untested
 * and machines booted but lost networking" -- is that skb->mark is not the
 * sensor's.  It is one shared 32-bit field that nftables and iptables rules
 * (meta mark, MARK), tc filters and other agents write too, and the sensor
 * trusts that a set bit 15 is its own verdict.  The sample traffic classifier
 * (samples/linux-netguard) writes its class into bits 8-15 of every inbound
 * packet's mark, bit 15 meaning "classified".  Alone, each is harmless;
 * together, LOCAL_IN drops every inbound packet: the machine boots and runs,
 * its serial console and the hypervisor's virtio channels keep working, SSH
 * and every other inbound connection are dead -- and the sensor reports
 * itself healthy, because it is doing exactly what it was written to do.
 *
 * Status (read-only, /sys/module/testbed_sensor/parameters): host_contained,
 * contain_drops.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/skbuff.h>
#include <net/net_namespace.h>

#include "tbs.h"

/* Set by a containment order from the console; the sample never gets one. */
static unsigned int host_contained;
static atomic_t contain_drops = ATOMIC_INIT(0);

static int tbs_contain_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int tbs_contain_param_get_atomic(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops tbs_contain_uint_ops = {
	.set = tbs_contain_param_set_ro,
	.get = param_get_uint,
};

static const struct kernel_param_ops tbs_contain_atomic_ops = {
	.set = tbs_contain_param_set_ro,
	.get = tbs_contain_param_get_atomic,
};

module_param_cb(host_contained, &tbs_contain_uint_ops, &host_contained, 0444);
MODULE_PARM_DESC(host_contained, "1 while the console has this host contained (read-only)");
module_param_cb(contain_drops, &tbs_contain_atomic_ops, &contain_drops, 0444);
MODULE_PARM_DESC(contain_drops, "Inbound packets dropped as contained (read-only)");

static bool tbs_is_loopback(const struct net_device *dev)
{
	return dev && (dev->flags & IFF_LOOPBACK);
}

/* PRE_ROUTING: a contained host's packets get the verdict in their mark. */
static unsigned int tbs_contain_mark(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	if (READ_ONCE(host_contained) && !tbs_is_loopback(state->in))
		skb->mark |= TBS_CONTAIN_MARK;
	return NF_ACCEPT;
}

/* LOCAL_IN: enforce the verdict -- trusting that nobody but the sensor sets the bit. */
static unsigned int tbs_contain_enforce(void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	if (!(skb->mark & TBS_CONTAIN_MARK) || tbs_is_loopback(state->in))
		return NF_ACCEPT;
	if (atomic_inc_return(&contain_drops) == 1)
		pr_notice("network containment: dropping inbound packets marked contained (first: mark %#x on %s)\n",
			  skb->mark, state->in ? state->in->name : "?");
	return NF_DROP;
}

static const struct nf_hook_ops tbs_contain_ops[] = {
	{ .hook = tbs_contain_mark, .pf = NFPROTO_IPV4, .hooknum = NF_INET_PRE_ROUTING,
	  .priority = NF_IP_PRI_MANGLE },
	{ .hook = tbs_contain_mark, .pf = NFPROTO_IPV6, .hooknum = NF_INET_PRE_ROUTING,
	  .priority = NF_IP6_PRI_MANGLE },
	{ .hook = tbs_contain_enforce, .pf = NFPROTO_IPV4, .hooknum = NF_INET_LOCAL_IN,
	  .priority = NF_IP_PRI_FILTER },
	{ .hook = tbs_contain_enforce, .pf = NFPROTO_IPV6, .hooknum = NF_INET_LOCAL_IN,
	  .priority = NF_IP6_PRI_FILTER },
};

static int __net_init tbs_contain_net_init(struct net *net)
{
	return nf_register_net_hooks(net, tbs_contain_ops, ARRAY_SIZE(tbs_contain_ops));
}

static void __net_exit tbs_contain_net_exit(struct net *net)
{
	nf_unregister_net_hooks(net, tbs_contain_ops, ARRAY_SIZE(tbs_contain_ops));
}

static struct pernet_operations tbs_contain_net_ops = {
	.init = tbs_contain_net_init,
	.exit = tbs_contain_net_exit,
};

/* Hook every network namespace, present and future. */
int tbs_contain_start(void)
{
	int ret = register_pernet_subsys(&tbs_contain_net_ops);

	if (ret)
		pr_err("cannot hook netfilter for network containment: %d\n", ret);
	else
		pr_info("network containment ready (host not contained)\n");
	return ret;
}

void tbs_contain_stop(void)
{
	unregister_pernet_subsys(&tbs_contain_net_ops);
}
