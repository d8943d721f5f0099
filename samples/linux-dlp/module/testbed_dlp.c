// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_dlp - sample "DLP agent" (device control) for Endpoint Testbed.
 *
 * !!! NEVER LOAD THIS MODULE ON A REAL MACHINE.  Only inside disposable
 * guest VMs: together with the sample sensor (samples/linux-sensor) it
 * crashes the kernel.
 *
 * Device control: the agent watches every device added to the platform bus
 * (a bus notifier, BUS_NOTIFY_ADD_DEVICE) and tags it with its policy
 * verdict.  To find the tag without a lookup on later access checks, it keeps
 * the tag's pointer in the device's driver data: "a device that has no driver
 * yet has no use for its driver data".  A driver that binds later sets its
 * own driver data in probe() and never reads the old value, so on a stock
 * system nothing notices.
 *
 * That assumption is the agent's half of the 2019 incident (sensor + DLP
 * agent together crashed machines neither crashed alone): a device's
 * creator may keep its own state in the driver data before adding the
 * device, as the sample sensor does.  The agent overwrites that pointer with
 * its tag; the sensor trusts the pointer it stored and reads the tag as its
 * own state.  The tag starts with an 8-byte ASCII magic, "DLPTAG01", which
 * the sensor takes for a pointer: a non-canonical address, so the read is a
 * general protection fault in the sensor -- at every boot, because the agent
 * loads first (modules-load.d files load in name order: dlp-agent.conf
 * before testbed-sensor.conf).
 *
 * Status under /sys/module/testbed_dlp/parameters (read-only):
 * watching (1 while the notifier is registered), devices_tagged.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/string.h>

#ifndef DLP_VERSION
#define DLP_VERSION "0.0.0-dev"
#endif

/* "DLPTAG01", little endian: recognizable in a memory dump. */
#define DLP_TAG_MAGIC 0x3130474154504c44ULL

enum dlp_verdict { DLP_ALLOW, DLP_AUDIT };

struct dlp_tag {
	u64 magic;
	struct device *dev;
	enum dlp_verdict verdict;
	struct list_head node;
	char name[48];
};

static LIST_HEAD(dlp_tags);
static DEFINE_MUTEX(dlp_tags_lock);

static unsigned int watching;
static atomic_t devices_tagged = ATOMIC_INIT(0);

static int dlp_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops dlp_ro_uint_ops = {
	.set = dlp_param_set_ro,
	.get = param_get_uint,
};

static int dlp_param_get_atomic(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops dlp_ro_atomic_ops = {
	.set = dlp_param_set_ro,
	.get = dlp_param_get_atomic,
};

module_param_cb(watching, &dlp_ro_uint_ops, &watching, 0444);
MODULE_PARM_DESC(watching, "1 while device control watches the platform bus (read-only)");
module_param_cb(devices_tagged, &dlp_ro_atomic_ops, &devices_tagged, 0444);
MODULE_PARM_DESC(devices_tagged, "Platform devices tagged with a verdict since load (read-only)");

/* Audit policy: every device is allowed, and the decision is recorded. */
static enum dlp_verdict dlp_decide(struct device *dev)
{
	return DLP_AUDIT;
}

static void dlp_tag_device(struct device *dev)
{
	struct dlp_tag *tag = kzalloc(sizeof(*tag), GFP_KERNEL);

	if (!tag) {
		pr_err("no memory to tag %s\n", dev_name(dev));
		return;
	}
	tag->magic = DLP_TAG_MAGIC;
	tag->dev = dev;
	tag->verdict = dlp_decide(dev);
	strscpy(tag->name, dev_name(dev), sizeof(tag->name));
	mutex_lock(&dlp_tags_lock);
	list_add(&tag->node, &dlp_tags);
	mutex_unlock(&dlp_tags_lock);
	/* The device has no driver yet: keep the tag where access checks find it. */
	dev_set_drvdata(dev, tag);
	atomic_inc(&devices_tagged);
	pr_info("device %s: allowed (audit)\n", tag->name);
}

static void dlp_untag_device(struct device *dev)
{
	struct dlp_tag *tag, *next;

	mutex_lock(&dlp_tags_lock);
	list_for_each_entry_safe(tag, next, &dlp_tags, node) {
		if (tag->dev != dev)
			continue;
		list_del(&tag->node);
		if (dev_get_drvdata(dev) == tag)
			dev_set_drvdata(dev, NULL);
		kfree(tag);
	}
	mutex_unlock(&dlp_tags_lock);
}

static int dlp_bus_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct device *dev = data;

	switch (action) {
	case BUS_NOTIFY_ADD_DEVICE:
		dlp_tag_device(dev);
		break;
	case BUS_NOTIFY_DEL_DEVICE:
		dlp_untag_device(dev);
		break;
	}
	return NOTIFY_DONE;
}

static struct notifier_block dlp_bus_nb = {
	.notifier_call = dlp_bus_notify,
};

static int __init dlp_init(void)
{
	int ret = bus_register_notifier(&platform_bus_type, &dlp_bus_nb);

	if (ret) {
		pr_err("cannot watch the platform bus: %d\n", ret);
		return ret;
	}
	watching = 1;
	pr_info("DLP agent %s: device control active (policy audit), watching the platform bus\n",
		DLP_VERSION);
	return 0;
}

static void __exit dlp_exit(void)
{
	struct dlp_tag *tag, *next;

	bus_unregister_notifier(&platform_bus_type, &dlp_bus_nb);
	watching = 0;
	mutex_lock(&dlp_tags_lock);
	list_for_each_entry_safe(tag, next, &dlp_tags, node) {
		list_del(&tag->node);
		if (dev_get_drvdata(tag->dev) == tag)
			dev_set_drvdata(tag->dev, NULL);
		kfree(tag);
	}
	mutex_unlock(&dlp_tags_lock);
	pr_info("DLP agent stopped\n");
}

module_init(dlp_init);
module_exit(dlp_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Endpoint Testbed");
MODULE_DESCRIPTION("Sample DLP agent (device control) that reuses devices' driver data (testing only)");
MODULE_VERSION(DLP_VERSION);
