// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor - sample "endpoint security sensor" for Endpoint Testbed.
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 * Only load it inside a disposable guest VM.  With bad content it oopses
 * the kernel, and with panic_on_oops=1 (oops=panic) the oops is a panic.
 *
 * At init the sensor loads its content ("channel") file through the
 * firmware loader (/lib/firmware/testbed-sensor/channel.bin), parses it
 * into an in-kernel template + rule set, and runs an initial scan that
 * evaluates the rules against an event describing the loading task.
 *
 * The defect mirrors the July 2024 CrowdStrike Falcon incident (Channel
 * File 291): the content interpreter trusts numbers that come from the
 * content file.  In particular the template's field count is taken from
 * the file and used to size the template's field array, while the matcher
 * reads the fixed number of fields the sensor was compiled to expect
 * (TBS_TEMPLATE_FIELDS).  A content file whose field count is 0 (e.g. a
 * zero-filled file) yields kcalloc(0, ...) == ZERO_SIZE_PTR (0x10), which
 * is "not NULL", so the allocation check passes; tbs_match_template() then
 * reads field 0 through it and takes a page fault at address 0x10:
 *
 *   BUG: kernel NULL pointer dereference, address: 0000000000000010
 *   RIP: 0010:tbs_match_template+0x../0x.. [testbed_sensor]
 *
 * A smaller field count (1..19) is a silent heap out-of-bounds read, and a
 * field whose input index is >= TBS_SENSOR_INPUTS reads past the event's
 * input array -- the "21 fields vs 20 inputs" mismatch of the real incident.
 * Nothing here calls panic()/BUG() or writes through NULL on purpose: the
 * crash is an ordinary memory fault caused by trusting content.
 *
 * Content format: see ../README.md and ../make_content.py.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/firmware.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/stringhash.h>
#include <linux/types.h>
#include <linux/utsname.h>

#define TBS_CONTENT_PATH	"testbed-sensor/channel.bin"

#ifndef TBS_VERSION
#define TBS_VERSION		"0.0.0-dev"
#endif

/* Number of input values the sensor supplies for every event. */
#define TBS_SENSOR_INPUTS	20
/*
 * Number of fields the sensor's integration code "knows" the process-event
 * template type to have.  The content is trusted to define at least this
 * many fields -- it is never checked against the field count in the file.
 */
#define TBS_TEMPLATE_FIELDS	20

/* Criterion operators. */
enum tbs_op {
	TBS_OP_ANY	= 0,	/* wildcard: always matches */
	TBS_OP_EQ	= 1,
	TBS_OP_NE	= 2,
	TBS_OP_MASK	= 3,	/* (value & operand) != 0 */
	TBS_OP_LT	= 4,
	TBS_OP_GT	= 5,
};

/* ---- on-disk format (little endian, packed) ---------------------------- */

struct tbs_disk_header {
	u8	magic[4];		/* "TBSC" */
	__le16	format_version;		/* 1 */
	__le16	header_size;		/* 64 */
	__le32	content_version;	/* e.g. 291 */
	__le32	template_id;		/* template type instantiated by this file */
	__le32	field_count;		/* number of template field descriptors */
	__le32	fields_offset;		/* file offset of field descriptor array */
	__le32	rule_count;		/* number of rules */
	__le32	rules_offset;		/* file offset of first rule */
	__le32	rules_size;		/* bytes of rule section */
	__le32	flags;
	char	channel[24];		/* NUL padded channel name */
} __packed;

struct tbs_disk_field {
	u8	input;			/* index into the event's input values */
	u8	type;			/* informational: 1 = u64, 2 = hash, 3 = flags */
	__le16	flags;
	__le32	name_hash;		/* FNV-1a of the field name */
} __packed;

struct tbs_disk_rule {
	__le16	rule_id;
	u8	action;			/* 0 = log, 1 = alert */
	u8	field_count;		/* number of criteria that follow */
	__le32	reserved;
} __packed;

struct tbs_disk_criterion {
	u8	field;			/* template field index */
	u8	op;			/* enum tbs_op */
	__le16	reserved0;
	__le32	reserved1;
	__le64	value;
} __packed;

static_assert(sizeof(struct tbs_disk_header) == 64);
static_assert(sizeof(struct tbs_disk_field) == 8);
static_assert(sizeof(struct tbs_disk_rule) == 8);
static_assert(sizeof(struct tbs_disk_criterion) == 16);

/* ---- in-kernel representation ------------------------------------------ */

struct tbs_field {
	u32 input;
	u32 type;
};

struct tbs_template {
	u32 id;
	u32 nfields;
	struct tbs_field *fields;
};

struct tbs_criterion {
	u32 field;
	u32 op;
	u64 value;
};

struct tbs_rule {
	u32 id;
	u32 action;
	u32 ncrit;
	struct tbs_criterion *crit;
};

struct tbs_event {
	u64 inputs[TBS_SENSOR_INPUTS];
};

static struct platform_device *tbs_pdev;
static struct tbs_template tbs_tmpl;
static struct tbs_rule *tbs_rules;
static u32 tbs_nrules;

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

module_param_cb(rules_loaded, &tbs_ro_uint_ops, &rules_loaded, 0444);
MODULE_PARM_DESC(rules_loaded, "Number of detection rules loaded from content (read-only)");
module_param_cb(content_version, &tbs_ro_uint_ops, &content_version, 0444);
MODULE_PARM_DESC(content_version, "Version of the loaded content file (read-only)");
module_param_cb(rules_matched, &tbs_ro_uint_ops, &rules_matched, 0444);
MODULE_PARM_DESC(rules_matched, "Rules matched by the initial scan (read-only)");

/* ---- content parser ------------------------------------------------------ */

static void tbs_free_content(void)
{
	u32 i;

	if (!ZERO_OR_NULL_PTR(tbs_rules)) {
		for (i = 0; i < tbs_nrules; i++)
			kfree(tbs_rules[i].crit);
	}
	kfree(tbs_rules);
	tbs_rules = NULL;
	tbs_nrules = 0;
	kfree(tbs_tmpl.fields);
	memset(&tbs_tmpl, 0, sizeof(tbs_tmpl));
}

/*
 * Parse a content file.  Like the interpreter it imitates, this parser
 * trusts the counts and offsets in the file: the content is "validated
 * upstream" by the content pipeline, so the sensor does not re-check it.
 */
static int tbs_parse_content(const u8 *data, size_t size)
{
	const struct tbs_disk_header *hdr = (const void *)data;
	const struct tbs_disk_field *dfield;
	const u8 *p;
	u32 i, j;

	if (size < sizeof(*hdr)) {
		pr_err("content file too short (%zu bytes)\n", size);
		return -EINVAL;
	}

	tbs_tmpl.id = le32_to_cpu(hdr->template_id);
	tbs_tmpl.nfields = le32_to_cpu(hdr->field_count);
	/* kcalloc(0, ...) returns ZERO_SIZE_PTR, which passes the check below. */
	tbs_tmpl.fields = kcalloc(tbs_tmpl.nfields, sizeof(*tbs_tmpl.fields),
				  GFP_KERNEL);
	if (!tbs_tmpl.fields)
		return -ENOMEM;

	dfield = (const void *)(data + le32_to_cpu(hdr->fields_offset));
	for (i = 0; i < tbs_tmpl.nfields; i++) {
		tbs_tmpl.fields[i].input = dfield[i].input;
		tbs_tmpl.fields[i].type = dfield[i].type;
	}

	tbs_nrules = le32_to_cpu(hdr->rule_count);
	tbs_rules = kcalloc(tbs_nrules, sizeof(*tbs_rules), GFP_KERNEL);
	if (!tbs_rules)
		goto nomem;

	p = data + le32_to_cpu(hdr->rules_offset);
	for (i = 0; i < tbs_nrules; i++) {
		const struct tbs_disk_rule *dr = (const void *)p;
		const struct tbs_disk_criterion *dc = (const void *)(dr + 1);
		struct tbs_rule *r = &tbs_rules[i];

		r->id = le16_to_cpu(dr->rule_id);
		r->action = dr->action;
		r->ncrit = dr->field_count;
		r->crit = kcalloc(r->ncrit, sizeof(*r->crit), GFP_KERNEL);
		if (!r->crit)
			goto nomem;
		for (j = 0; j < r->ncrit; j++) {
			r->crit[j].field = dc[j].field;
			r->crit[j].op = dc[j].op;
			r->crit[j].value = le64_to_cpu(dc[j].value);
		}
		p = (const u8 *)(dc + r->ncrit);
	}

	content_version = le32_to_cpu(hdr->content_version);
	return 0;

nomem:
	tbs_free_content();
	return -ENOMEM;
}

/* ---- matcher ------------------------------------------------------------- */

static bool tbs_match_criterion(const struct tbs_criterion *c, const u64 *vec)
{
	u64 v = vec[c->field];

	switch (c->op) {
	case TBS_OP_ANY:
		return true;
	case TBS_OP_EQ:
		return v == c->value;
	case TBS_OP_NE:
		return v != c->value;
	case TBS_OP_MASK:
		return (v & c->value) != 0;
	case TBS_OP_LT:
		return v < c->value;
	case TBS_OP_GT:
		return v > c->value;
	default:
		return false;
	}
}

/*
 * Evaluate all rules against one event.  First the event's inputs are
 * mapped through the template into the field vector -- reading the
 * TBS_TEMPLATE_FIELDS field descriptors the sensor expects, regardless of
 * how many the content actually defined (the bug) -- then each rule's
 * criteria are evaluated on that vector.  Returns the number of matches.
 */
static noinline __noclone unsigned int tbs_match_template(const struct tbs_template *tmpl,
						const struct tbs_rule *rules,
						u32 nrules,
						const struct tbs_event *ev)
{
	u64 vec[TBS_TEMPLATE_FIELDS];
	unsigned int matched = 0;
	u32 i, j;

	for (i = 0; i < TBS_TEMPLATE_FIELDS; i++) {
		const struct tbs_field *f = &tmpl->fields[i];

		vec[i] = ev->inputs[f->input];
	}

	for (i = 0; i < nrules; i++) {
		const struct tbs_rule *r = &rules[i];
		bool hit = true;

		for (j = 0; j < r->ncrit && hit; j++)
			hit = tbs_match_criterion(&r->crit[j], vec);
		if (hit) {
			matched++;
			if (r->action)
				pr_info("rule %u matched (pid %llu)\n", r->id,
					ev->inputs[0]);
		}
	}
	return matched;
}

static void tbs_build_event(struct tbs_event *ev)
{
	const struct cred *cred = current_cred();
	struct new_utsname *uts = utsname();

	memset(ev, 0, sizeof(*ev));
	ev->inputs[0] = task_pid_nr(current);
	ev->inputs[1] = task_tgid_nr(current);
	ev->inputs[2] = task_ppid_nr(current);
	ev->inputs[3] = from_kuid(&init_user_ns, cred->uid);
	ev->inputs[4] = from_kuid(&init_user_ns, cred->euid);
	ev->inputs[5] = from_kgid(&init_user_ns, cred->gid);
	ev->inputs[6] = from_kgid(&init_user_ns, cred->egid);
	ev->inputs[7] = task_session_vnr(current);
	ev->inputs[8] = full_name_hash(NULL, current->comm, strnlen(current->comm, TASK_COMM_LEN));
	ev->inputs[9] = full_name_hash(NULL, uts->nodename, strnlen(uts->nodename, sizeof(uts->nodename)));
	ev->inputs[10] = full_name_hash(NULL, uts->release, strnlen(uts->release, sizeof(uts->release)));
	ev->inputs[11] = current->flags;
	ev->inputs[12] = cred->cap_effective.cap[0];
	ev->inputs[13] = cred->cap_effective.cap[1];
	ev->inputs[14] = task_nice(current) + 20;
	ev->inputs[15] = raw_smp_processor_id();
	ev->inputs[16] = jiffies_to_msecs(jiffies - INITIAL_JIFFIES);
	ev->inputs[17] = current->signal->tty ? 1 : 0;
	ev->inputs[18] = (current->mm == NULL);
	ev->inputs[19] = 1;	/* event type: sensor start */
}

/* ---- module init / exit -------------------------------------------------- */

static int __init tbs_init(void)
{
	const struct firmware *fw;
	struct tbs_event ev;
	int ret;

	/* A device to request the content file for (and to name in logs). */
	tbs_pdev = platform_device_register_simple(KBUILD_MODNAME, PLATFORM_DEVID_NONE,
						   NULL, 0);
	if (IS_ERR(tbs_pdev))
		return PTR_ERR(tbs_pdev);

	ret = request_firmware(&fw, TBS_CONTENT_PATH, &tbs_pdev->dev);
	if (ret) {
		pr_err("cannot load content %s: %d\n", TBS_CONTENT_PATH, ret);
		goto err_dev;
	}

	ret = tbs_parse_content(fw->data, fw->size);
	release_firmware(fw);
	if (ret) {
		pr_err("cannot parse content: %d\n", ret);
		goto err_dev;
	}
	pr_info("loaded %u rules from content version %u\n", tbs_nrules,
		content_version);

	/* Initial scan: evaluate the content against the loading task. */
	tbs_build_event(&ev);
	rules_matched = tbs_match_template(&tbs_tmpl, tbs_rules, tbs_nrules, &ev);
	rules_loaded = tbs_nrules;
	pr_info("sensor active: template %u, %u fields, initial scan matched %u of %u rules\n",
		tbs_tmpl.id, tbs_tmpl.nfields, rules_matched, rules_loaded);
	return 0;

err_dev:
	platform_device_unregister(tbs_pdev);
	return ret;
}

static void __exit tbs_exit(void)
{
	tbs_free_content();
	platform_device_unregister(tbs_pdev);
	rules_loaded = 0;
	pr_info("sensor stopped\n");
}

module_init(tbs_init);
module_exit(tbs_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Endpoint Testbed");
MODULE_DESCRIPTION("Sample endpoint sensor with a content-parsing defect (testing only; crashes on bad content)");
MODULE_VERSION(TBS_VERSION);
MODULE_FIRMWARE(TBS_CONTENT_PATH);
