// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor - sample "endpoint security sensor" for Endpoint Testbed.
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 * Only load it inside a disposable guest VM.  With bad content it oopses
 * the kernel, and with panic_on_oops=1 (oops=panic) the oops is a panic.
 *
 * At init the sensor registers its platform device, finds its state in the
 * device's driver data (as every driver callback does), loads its content
 * ("channel") file through the firmware loader
 * (/lib/firmware/testbed-sensor/channel.bin), parses it into a template and
 * rules, runs an initial scan on an event describing the loading task, and
 * hooks process execution (the sched_process_exec tracepoint) for the exec
 * rules.  The defects -- all ordinary memory faults caused by trusting
 * something, never panic()/BUG() -- are described in content.c and match.c;
 * the one that only shows with a co-installed DLP agent is here: the sensor
 * trusts that its device's driver data is still the pointer it stored, and
 * the sample DLP agent (samples/linux-dlp) overwrites the driver data of
 * every new platform device with its own tag.
 *
 * Release 1.1.0 (feature level 2) adds two things with defects of their own:
 * a per-kernel-build profile looked up at load, which it assumes exists
 * (kprofile.c: a NULL dereference on a kernel the vendor did not test), and
 * network containment, which trusts that bit 15 of a packet's mark is its own
 * (contain.c: with the sample traffic classifier, samples/linux-netguard,
 * every inbound packet is dropped).
 *
 * Status under /sys/module/testbed_sensor/parameters (read-only):
 * rules_loaded, content_version, rules_matched, content_state (none, active,
 * rejected), content_error, execs_seen, exec_matched.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/binfmts.h>
#include <linux/firmware.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/tracepoint.h>
#include <linux/utsname.h>

#include "tbs.h"

enum tbs_state { TBS_NONE, TBS_ACTIVE, TBS_REJECTED };

static const char *const tbs_state_names[] = {
	[TBS_NONE] = "none",
	[TBS_ACTIVE] = "active",
	[TBS_REJECTED] = "rejected",
};

/* Where the content comes from; a pointer so a future release can switch channels. */
struct tbs_config {
	const char *content_path;
};

struct tbs_sensor {
	const struct tbs_config *config;
	u32 hooks;			/* TBS_KP_*: 1.0.0 has the exec hook; 1.1.0 what its kernel profile says */
	struct tbs_content content;
	enum tbs_state state;
	char error[160];
	atomic_t execs_seen;
	atomic_t exec_matched;
};

static const struct tbs_config tbs_default_config = {
	.content_path = TBS_CONTENT_PATH,
};

static struct tbs_sensor tbs_sensor = {
	.config = &tbs_default_config,
	.hooks = TBS_KP_EXEC,
};

static struct platform_device *tbs_pdev;
static struct tracepoint *tbs_exec_tp;

/* ---- read-only status exposed under /sys/module/testbed_sensor/parameters */

static unsigned int rules_loaded;
static unsigned int content_version;
static unsigned int rules_matched;

static int tbs_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops tbs_ro_uint_ops = {
	.set = tbs_param_set_ro,
	.get = param_get_uint,
};

static int tbs_param_get_atomic(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops tbs_ro_atomic_ops = {
	.set = tbs_param_set_ro,
	.get = tbs_param_get_atomic,
};

static int tbs_param_get_state(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%s\n", tbs_state_names[READ_ONCE(tbs_sensor.state)]);
}

static const struct kernel_param_ops tbs_ro_state_ops = {
	.set = tbs_param_set_ro,
	.get = tbs_param_get_state,
};

static int tbs_param_get_error(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%s\n", tbs_sensor.error);
}

static const struct kernel_param_ops tbs_ro_error_ops = {
	.set = tbs_param_set_ro,
	.get = tbs_param_get_error,
};

module_param_cb(rules_loaded, &tbs_ro_uint_ops, &rules_loaded, 0444);
MODULE_PARM_DESC(rules_loaded, "Number of detection rules loaded from content (read-only)");
module_param_cb(content_version, &tbs_ro_uint_ops, &content_version, 0444);
MODULE_PARM_DESC(content_version, "Version of the loaded content file (read-only)");
module_param_cb(rules_matched, &tbs_ro_uint_ops, &rules_matched, 0444);
MODULE_PARM_DESC(rules_matched, "Rules matched by the initial scan (read-only)");
module_param_cb(content_state, &tbs_ro_state_ops, NULL, 0444);
MODULE_PARM_DESC(content_state, "none, active or rejected (validating build) (read-only)");
module_param_cb(content_error, &tbs_ro_error_ops, NULL, 0444);
MODULE_PARM_DESC(content_error, "Why the content was rejected (read-only)");
module_param_cb(execs_seen, &tbs_ro_atomic_ops, &tbs_sensor.execs_seen, 0444);
MODULE_PARM_DESC(execs_seen, "Process executions observed (read-only)");
module_param_cb(exec_matched, &tbs_ro_atomic_ops, &tbs_sensor.exec_matched, 0444);
MODULE_PARM_DESC(exec_matched, "Exec rule matches (read-only)");

/* ---- process execution hook ---------------------------------------------- */

static void tbs_on_exec(void *data, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct tbs_sensor *s = data;
	char parent[TASK_COMM_LEN];
	struct tbs_exec_event ev = {};

	atomic_inc(&s->execs_seen);
	if (!s->content.nexec)
		return;
	rcu_read_lock();
	strscpy(parent, rcu_dereference(p->real_parent)->comm, sizeof(parent));
	rcu_read_unlock();
	ev.str[0] = p->comm;
	ev.str[1] = bprm->filename;
	ev.str[2] = parent;
	ev.pid = task_pid_nr(p);
	atomic_add(tbs_match_exec(&s->content, &ev), &s->exec_matched);
}

static void tbs_find_exec_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_process_exec"))
		*(struct tracepoint **)priv = tp;
}

static int tbs_hook_exec(struct tbs_sensor *s)
{
	int ret;

	for_each_kernel_tracepoint(tbs_find_exec_tracepoint, &tbs_exec_tp);
	if (!tbs_exec_tp) {
		pr_err("tracepoint sched_process_exec not found\n");
		return -ENOENT;
	}
	ret = tracepoint_probe_register(tbs_exec_tp, (void *)tbs_on_exec, s);
	if (ret) {
		pr_err("cannot hook sched_process_exec: %d\n", ret);
		tbs_exec_tp = NULL;
	}
	return ret;
}

static void tbs_unhook_exec(struct tbs_sensor *s)
{
	if (!tbs_exec_tp)
		return;
	tracepoint_probe_unregister(tbs_exec_tp, (void *)tbs_on_exec, s);
	tracepoint_synchronize_unregister();
	tbs_exec_tp = NULL;
}

/* ---- start ----------------------------------------------------------------- */

/* The validating build runs on without content and says why: the machine must stay up. */
static void tbs_reject(struct tbs_sensor *s)
{
	s->state = TBS_REJECTED;
	pr_err("content rejected: %s; sensor %s running without content\n", s->error, TBS_VERSION);
}

static int tbs_load_content(struct tbs_sensor *s, struct device *dev)
{
	const struct firmware *fw;
	int ret;

	ret = request_firmware(&fw, s->config->content_path, dev);
	if (ret) {
		scnprintf(s->error, sizeof(s->error), "cannot read %s: error %d",
			  s->config->content_path, ret);
		return ret;
	}
	if (TBS_VALIDATE) {
		ret = tbs_validate_content(fw->data, fw->size, s->error, sizeof(s->error));
		if (ret) {
			release_firmware(fw);
			return ret;
		}
	}
	ret = tbs_parse_content(&s->content, fw->data, fw->size);
	release_firmware(fw);
	if (ret)
		scnprintf(s->error, sizeof(s->error), "cannot parse content: error %d", ret);
	return ret;
}

/* Start the sensor on its device: the state is the device's driver data. */
static noinline int tbs_sensor_start(struct platform_device *pdev)
{
	struct tbs_sensor *s = platform_get_drvdata(pdev);
	struct tbs_event ev;
	int ret;

	ret = tbs_load_content(s, &pdev->dev);
	if (ret) {
		if (TBS_VALIDATE) {
			tbs_reject(s);
			return 0;
		}
		pr_err("%s\n", s->error);
		return ret;
	}
	content_version = s->content.version;
	pr_info("loaded %u rules from content version %u\n", s->content.nrules, content_version);

	/* Initial scan: evaluate the content against the loading task. */
	tbs_build_event(&ev);
	rules_matched = tbs_match_template(&s->content.tmpl, s->content.rules, s->content.nrules, &ev);
	rules_loaded = s->content.nrules;

	ret = (s->hooks & TBS_KP_EXEC) ? tbs_hook_exec(s) : 0;
	if (ret)
		goto err_content;
#if TBS_FEATURE_LEVEL >= 2
	if (s->hooks & TBS_KP_CONTAIN) {
		ret = tbs_contain_start();
		if (ret)
			goto err_exec;
	}
#endif
	s->state = TBS_ACTIVE;
	pr_info("sensor %s active: template %u, %u fields, initial scan matched %u of %u rules, %u exec rules\n",
		TBS_VERSION, s->content.tmpl.id, s->content.tmpl.nfields, rules_matched, rules_loaded,
		s->content.nexec);
	return 0;

#if TBS_FEATURE_LEVEL >= 2
err_exec:
	tbs_unhook_exec(s);
#endif
err_content:
	tbs_free_content(&s->content);
	rules_loaded = 0;
	return ret;
}

/* ---- module init / exit -------------------------------------------------- */

static int __init tbs_init(void)
{
	int ret;

#if TBS_FEATURE_LEVEL >= 2
	/* Which hooks are safe on this kernel build: the lab's profile of it. */
	tbs_sensor.hooks = tbs_apply_kernel_profile(tbs_find_kernel_profile(init_utsname()->release),
						    init_utsname()->release, init_utsname()->version);
#endif
	/* A device to request the content file for, name in logs, and carry the state. */
	tbs_pdev = platform_device_alloc(KBUILD_MODNAME, PLATFORM_DEVID_NONE);
	if (!tbs_pdev)
		return -ENOMEM;
	platform_set_drvdata(tbs_pdev, &tbs_sensor);
	ret = platform_device_add(tbs_pdev);
	if (ret)
		goto err_put;

	ret = tbs_sensor_start(tbs_pdev);
	if (ret)
		goto err_del;
	return 0;

err_del:
	platform_device_del(tbs_pdev);
err_put:
	platform_device_put(tbs_pdev);
	return ret;
}

static void __exit tbs_exit(void)
{
#if TBS_FEATURE_LEVEL >= 2
	if (tbs_sensor.state == TBS_ACTIVE && (tbs_sensor.hooks & TBS_KP_CONTAIN))
		tbs_contain_stop();
#endif
	tbs_unhook_exec(&tbs_sensor);
	tbs_free_content(&tbs_sensor.content);
	platform_device_unregister(tbs_pdev);
	rules_loaded = 0;
	pr_info("sensor stopped\n");
}

module_init(tbs_init);
module_exit(tbs_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Endpoint Testbed");
MODULE_DESCRIPTION("Sample endpoint sensor with content-parsing defects (testing only; crashes on bad content)");
MODULE_VERSION(TBS_VERSION);
MODULE_FIRMWARE(TBS_CONTENT_PATH);
