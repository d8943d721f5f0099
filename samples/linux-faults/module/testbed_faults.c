// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_faults - purpose-built faults for Endpoint Testbed's verdict tests.
 *
 * !!! BUILT TO TAKE A KERNEL DOWN.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 * Only load it inside a disposable guest VM.
 *
 * Like the sample sensor, the module reads a content file at load time
 * (/lib/firmware/testbed-faults/faults.conf) and that file alone decides
 * what it does, so one package serves many candidates that differ only in
 * content.  The file is text, one "key=value" per line, '#' comments:
 *
 *   fault=delayed-panic      none | delayed-panic | irq-spin | net-drop |
 *                            warn | reset-loop | sysctl-off
 *   delay_s=40               seconds after load (timed faults only, 0..3600)
 *
 * Timed faults fire from a delayed work item, delay_s seconds after load:
 *   delayed-panic  reads through a NULL pointer (a real page fault -> oops;
 *                  panic_on_oops turns it into a panic that pvpanic reports)
 *   irq-spin       disables interrupts and spins forever: on a one-vCPU
 *                  guest nothing runs again and no watchdog can fire; only
 *                  an injected NMI (unknown_nmi_panic=1) shows the stack
 *   net-drop       netfilter hooks drop every IPv4 packet in and out that
 *                  is not on a loopback device; the kernel runs on
 *   warn           one WARN_ON from tbf_warn_from_module(), then nothing
 *                  (taints the kernel W, no panic)
 *   reset-loop     emergency_restart(): loaded at every boot, a boot loop
 * Untimed: none (the control) and sysctl-off (the installer turns the panic
 * sysctls off; the module itself does nothing).
 *
 * Every announcement is pr_crit so that it reaches the serial console even
 * when the guest boots with "quiet":
 *   testbed_faults: <fault> armed: fires <n> s after load
 *   testbed_faults: <fault> firing now (<n> s after load): ...
 *
 * Read-only status under /sys/module/testbed_faults/parameters/:
 * fault, delay_s, state (idle | armed | fired), dropped (net-drop packets).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/compiler.h>
#include <linux/firmware.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/platform_device.h>
#include <linux/reboot.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>

#define TBF_CONTENT_PATH	"testbed-faults/faults.conf"
#define TBF_CONTENT_MAX		4096
#define TBF_MAX_DELAY_S		3600

#ifndef TBF_VERSION
#define TBF_VERSION		"0.0.0-dev"
#endif

enum tbf_fault {
	TBF_NONE,
	TBF_DELAYED_PANIC,
	TBF_IRQ_SPIN,
	TBF_NET_DROP,
	TBF_WARN,
	TBF_RESET_LOOP,
	TBF_SYSCTL_OFF,
};

/* The names the content file uses; match_string() maps them to the enum. */
static const char *const tbf_fault_names[] = {
	[TBF_NONE]		= "none",
	[TBF_DELAYED_PANIC]	= "delayed-panic",
	[TBF_IRQ_SPIN]		= "irq-spin",
	[TBF_NET_DROP]		= "net-drop",
	[TBF_WARN]		= "warn",
	[TBF_RESET_LOOP]	= "reset-loop",
	[TBF_SYSCTL_OFF]	= "sysctl-off",
};

enum tbf_state {
	TBF_IDLE,	/* nothing to fire (none, sysctl-off) */
	TBF_ARMED,	/* the delayed work is pending */
	TBF_FIRED,	/* the fault went off (and the kernel is still running) */
};

static const char *const tbf_state_names[] = {
	[TBF_IDLE]	= "idle",
	[TBF_ARMED]	= "armed",
	[TBF_FIRED]	= "fired",
};

static enum tbf_fault tbf_fault;
static unsigned int tbf_delay_s;
static enum tbf_state tbf_state;	/* written by the work item: READ_ONCE/WRITE_ONCE */
static atomic_long_t tbf_dropped = ATOMIC_LONG_INIT(0);
static bool tbf_hooks_registered;

static bool tbf_is_timed(enum tbf_fault fault)
{
	return fault != TBF_NONE && fault != TBF_SYSCTL_OFF;
}

/* ---- read-only status under /sys/module/testbed_faults/parameters ------- */

/* The content decides; "modprobe testbed_faults fault=..." is refused. */
static int tbf_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int tbf_param_get_fault(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%s\n", tbf_fault_names[tbf_fault]);
}

static int tbf_param_get_state(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%s\n", tbf_state_names[READ_ONCE(tbf_state)]);
}

static int tbf_param_get_dropped(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%ld\n", atomic_long_read(&tbf_dropped));
}

static const struct kernel_param_ops tbf_fault_ops = {
	.set = tbf_param_set_ro,
	.get = tbf_param_get_fault,
};

static const struct kernel_param_ops tbf_state_ops = {
	.set = tbf_param_set_ro,
	.get = tbf_param_get_state,
};

static const struct kernel_param_ops tbf_dropped_ops = {
	.set = tbf_param_set_ro,
	.get = tbf_param_get_dropped,
};

static const struct kernel_param_ops tbf_ro_uint_ops = {
	.set = tbf_param_set_ro,
	.get = param_get_uint,
};

module_param_cb(fault, &tbf_fault_ops, NULL, 0444);
MODULE_PARM_DESC(fault, "Fault chosen by the content file (read-only)");
module_param_cb(delay_s, &tbf_ro_uint_ops, &tbf_delay_s, 0444);
MODULE_PARM_DESC(delay_s, "Seconds after load at which the fault fires (read-only)");
module_param_cb(state, &tbf_state_ops, NULL, 0444);
MODULE_PARM_DESC(state, "idle, armed or fired (read-only)");
module_param_cb(dropped, &tbf_dropped_ops, NULL, 0444);
MODULE_PARM_DESC(dropped, "IPv4 packets dropped by the net-drop fault (read-only)");

/* ---- content parser ------------------------------------------------------ */

static int tbf_parse_line(char *line, bool *have_fault, bool *have_delay)
{
	char *key, *value;
	unsigned int delay;
	int index;

	line = strim(line);
	if (!*line || *line == '#')
		return 0;
	value = strchr(line, '=');
	if (!value) {
		pr_err("content: line without '=': %s\n", line);
		return -EINVAL;
	}
	*value++ = '\0';
	key = strim(line);
	value = strim(value);

	if (!strcmp(key, "fault")) {
		index = match_string(tbf_fault_names, ARRAY_SIZE(tbf_fault_names), value);
		if (index < 0) {
			pr_err("content: unknown fault '%s'\n", value);
			return -EINVAL;
		}
		tbf_fault = index;
		*have_fault = true;
		return 0;
	}
	if (!strcmp(key, "delay_s")) {
		if (kstrtouint(value, 10, &delay) || delay > TBF_MAX_DELAY_S) {
			pr_err("content: delay_s must be 0..%u, got '%s'\n", TBF_MAX_DELAY_S, value);
			return -EINVAL;
		}
		tbf_delay_s = delay;
		*have_delay = true;
		return 0;
	}
	pr_err("content: unknown key '%s'\n", key);
	return -EINVAL;
}

/* Unlike the sample sensor this parser trusts nothing: a bad file refuses the load. */
static int tbf_parse_content(const u8 *data, size_t size)
{
	bool have_fault = false, have_delay = false;
	char *text, *cursor, *line;
	int ret = 0;

	if (size > TBF_CONTENT_MAX) {
		pr_err("content: %zu bytes, at most %u allowed\n", size, TBF_CONTENT_MAX);
		return -EINVAL;
	}
	text = kmemdup_nul((const char *)data, size, GFP_KERNEL);
	if (!text)
		return -ENOMEM;
	cursor = text;
	while ((line = strsep(&cursor, "\n")) != NULL) {
		ret = tbf_parse_line(line, &have_fault, &have_delay);
		if (ret)
			goto out;
	}
	if (!have_fault) {
		pr_err("content: no 'fault=' line\n");
		ret = -EINVAL;
	} else if (tbf_is_timed(tbf_fault) && !have_delay) {
		pr_err("content: fault %s needs delay_s\n", tbf_fault_names[tbf_fault]);
		ret = -EINVAL;
	} else if (!tbf_is_timed(tbf_fault) && have_delay) {
		pr_err("content: fault %s never fires, delay_s makes no sense\n",
		       tbf_fault_names[tbf_fault]);
		ret = -EINVAL;
	}
out:
	kfree(text);
	return ret;
}

/* ---- the faults ---------------------------------------------------------- */

struct tbf_lookup {
	unsigned long key;
	unsigned long value;
};

/*
 * Never assigned.  delayed-panic reads through it the way a driver reads a
 * lookup result it forgot to check: an ordinary page fault, not panic().
 */
static struct tbf_lookup *tbf_lookup_result;

static noinline void tbf_fire_delayed_panic(void)
{
	struct tbf_lookup *found = READ_ONCE(tbf_lookup_result);

	pr_crit("delayed-panic firing now (%u s after load): reading through a NULL pointer\n",
		tbf_delay_s);
	pr_crit("delayed-panic: value %lu (never printed)\n", READ_ONCE(found->value));
}

/* Never cleared: the loop is endless, but the compiler cannot know it. */
static bool tbf_keep_spinning = true;

static noinline void tbf_spin_with_irqs_off(void)
{
	pr_crit("irq-spin firing now (%u s after load): spinning with interrupts off\n", tbf_delay_s);
	local_irq_disable();
	while (READ_ONCE(tbf_keep_spinning))
		cpu_relax();
	local_irq_enable();
}

static unsigned int tbf_drop_ipv4(void *priv, struct sk_buff *skb,
				  const struct nf_hook_state *state)
{
	const struct net_device *dev = state->in ? state->in : state->out;

	if (dev && (dev->flags & IFF_LOOPBACK))
		return NF_ACCEPT;
	atomic_long_inc(&tbf_dropped);
	return NF_DROP;
}

static const struct nf_hook_ops tbf_drop_ops[] = {
	{
		.hook		= tbf_drop_ipv4,
		.pf		= NFPROTO_IPV4,
		.hooknum	= NF_INET_PRE_ROUTING,
		.priority	= NF_IP_PRI_FIRST,
	},
	{
		.hook		= tbf_drop_ipv4,
		.pf		= NFPROTO_IPV4,
		.hooknum	= NF_INET_LOCAL_OUT,
		.priority	= NF_IP_PRI_FIRST,
	},
};

static noinline void tbf_drop_all_ipv4(void)
{
	int ret;

	pr_crit("net-drop firing now (%u s after load): dropping every IPv4 packet except loopback\n",
		tbf_delay_s);
	ret = nf_register_net_hooks(&init_net, tbf_drop_ops, ARRAY_SIZE(tbf_drop_ops));
	if (ret) {
		pr_err("net-drop: cannot register netfilter hooks: %d\n", ret);
		return;
	}
	tbf_hooks_registered = true;
}

static noinline void tbf_warn_from_module(void)
{
	pr_crit("warn firing now (%u s after load): one warning, then the kernel keeps running\n",
		tbf_delay_s);
	WARN_ON(READ_ONCE(tbf_fault) == TBF_WARN);
}

static noinline void tbf_reset_machine(void)
{
	pr_crit("reset-loop firing now (%u s after load): emergency restart\n", tbf_delay_s);
	emergency_restart();
}

static void tbf_fire(struct work_struct *work)
{
	WRITE_ONCE(tbf_state, TBF_FIRED);
	switch (tbf_fault) {
	case TBF_DELAYED_PANIC:
		tbf_fire_delayed_panic();
		break;
	case TBF_IRQ_SPIN:
		tbf_spin_with_irqs_off();
		break;
	case TBF_NET_DROP:
		tbf_drop_all_ipv4();
		break;
	case TBF_WARN:
		tbf_warn_from_module();
		break;
	case TBF_RESET_LOOP:
		tbf_reset_machine();
		break;
	case TBF_NONE:
	case TBF_SYSCTL_OFF:
		break;
	}
}

static DECLARE_DELAYED_WORK(tbf_fire_work, tbf_fire);

/* ---- module init / exit -------------------------------------------------- */

static int tbf_load_content(void)
{
	struct platform_device *pdev;
	const struct firmware *fw;
	int ret;

	/* request_firmware() wants a device to load for (and to name in logs). */
	pdev = platform_device_register_simple(KBUILD_MODNAME, PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);
	ret = request_firmware(&fw, TBF_CONTENT_PATH, &pdev->dev);
	if (ret) {
		pr_err("cannot load content %s: %d\n", TBF_CONTENT_PATH, ret);
	} else {
		ret = tbf_parse_content(fw->data, fw->size);
		release_firmware(fw);
	}
	platform_device_unregister(pdev);
	return ret;
}

static int __init tbf_init(void)
{
	int ret = tbf_load_content();

	if (ret)
		return ret;
	if (!tbf_is_timed(tbf_fault)) {
		WRITE_ONCE(tbf_state, TBF_IDLE);
		pr_crit("%s loaded: nothing will fire\n", tbf_fault_names[tbf_fault]);
		return 0;
	}
	WRITE_ONCE(tbf_state, TBF_ARMED);
	schedule_delayed_work(&tbf_fire_work, (unsigned long)tbf_delay_s * HZ);
	pr_crit("%s armed: fires %u s after load\n", tbf_fault_names[tbf_fault], tbf_delay_s);
	return 0;
}

static void __exit tbf_exit(void)
{
	/* After this the work is neither pending nor running: the hook flag is stable. */
	cancel_delayed_work_sync(&tbf_fire_work);
	if (tbf_hooks_registered)
		nf_unregister_net_hooks(&init_net, tbf_drop_ops, ARRAY_SIZE(tbf_drop_ops));
	pr_info("unloaded (%s)\n", tbf_fault_names[tbf_fault]);
}

module_init(tbf_init);
module_exit(tbf_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Endpoint Testbed");
MODULE_DESCRIPTION("Purpose-built kernel faults for testbed verdict tests (testing only; crashes kernels)");
MODULE_VERSION(TBF_VERSION);
MODULE_FIRMWARE(TBF_CONTENT_PATH);
