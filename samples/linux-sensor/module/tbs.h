/* SPDX-License-Identifier: GPL-2.0 */
/*
 * testbed_sensor: content format, in-kernel representation and build options.
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 *
 * One source tree builds every sensor release the sample ships; the build
 * options say which one (build_candidate.py derives them from the version):
 *
 *   TBS_VERSION        the release, e.g. "1.1.0" (MODULE_VERSION)
 *   TBS_FEATURE_LEVEL  content features the release knows:
 *                        1 = format 1 as shipped with 1.0.0 (rules of at most 4 criteria)
 *                        2 = 1.1.0: + compound rules (up to 16 criteria, flag TBS_CF_COMPOUND_RULES)
 *   TBS_VALIDATE       1 = the "-validating" build: check every count, offset and size
 *                      against the file and reject bad content, staying loaded
 *   TBS_KERNEL_PROFILES (feature level 2, kprofile.c only) the kernel builds the vendor's lab
 *                      tested, as TBS_PROFILE("<release>") entries: Kbuild makes them from the
 *                      make variable TBS_TESTED_KERNELS
 */
#ifndef TBS_H
#define TBS_H

#include <linux/build_bug.h>
#include <linux/types.h>

#ifndef TBS_VERSION
#define TBS_VERSION		"0.0.0-dev"
#endif
#ifndef TBS_FEATURE_LEVEL
#define TBS_FEATURE_LEVEL	1
#endif
#ifndef TBS_VALIDATE
#define TBS_VALIDATE		0
#endif

#define TBS_CONTENT_PATH	"testbed-sensor/channel.bin"
#define TBS_MAGIC		"TBSC"
#define TBS_FORMAT_VERSION	1
#define TBS_HEADER_SIZE		64

/* Number of input values the sensor supplies for the process-start (scan) event. */
#define TBS_SENSOR_INPUTS	20
/*
 * Number of fields the sensor's integration code "knows" the process
 * template to have.  The trusting parser never compares it with the
 * field count in the file.
 */
#define TBS_TEMPLATE_FIELDS	20
#define TBS_PROCESS_TEMPLATE	7
/* String inputs of an exec event: comm, filename, parent comm. */
#define TBS_EXEC_INPUTS		3
#define TBS_MAX_RULES		4096

/* Header flags: content features a file uses. */
#define TBS_CF_COMPOUND_RULES	0x1	/* rules with more than 4 criteria: sensor >= 1.1.0 */

/* Format 1 rules have at most this many criteria (what 1.0.0 was written for). */
#define TBS_FORMAT1_CRITERIA	4

#if TBS_FEATURE_LEVEL >= 2
#define TBS_MAX_CRITERIA	16
#define TBS_KNOWN_FLAGS		TBS_CF_COMPOUND_RULES
#else
#define TBS_MAX_CRITERIA	TBS_FORMAT1_CRITERIA
#define TBS_KNOWN_FLAGS		0
#endif

/* Criterion operators. */
enum tbs_op {
	TBS_OP_ANY	= 0,	/* wildcard: always matches */
	TBS_OP_EQ	= 1,
	TBS_OP_NE	= 2,
	TBS_OP_MASK	= 3,	/* (value & operand) != 0 */
	TBS_OP_LT	= 4,
	TBS_OP_GT	= 5,
};

/* When a rule is evaluated. */
enum tbs_event_kind {
	TBS_EVENT_SCAN	= 0,	/* once, at sensor start, on the loading task (fields via the template) */
	TBS_EVENT_EXEC	= 1,	/* at every exec, on the string inputs (FNV-1a of comm, filename, parent) */
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
	__le32	flags;			/* TBS_CF_* features the file uses */
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
	__le16	event;			/* enum tbs_event_kind (was reserved: 0 = scan) */
	__le16	reserved;
} __packed;

struct tbs_disk_criterion {
	u8	field;			/* scan: template field index; exec: string input index */
	u8	op;			/* enum tbs_op */
	__le16	reserved0;
	__le32	reserved1;
	__le64	value;
} __packed;

static_assert(sizeof(struct tbs_disk_header) == TBS_HEADER_SIZE);
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
	u32 event;
	u32 ncrit;
	struct tbs_criterion *crit;
};

struct tbs_content {
	u32 version;
	u32 flags;
	struct tbs_template tmpl;
	struct tbs_rule *rules;
	u32 nrules;
	u32 nexec;			/* rules evaluated on exec */
};

struct tbs_event {
	u64 inputs[TBS_SENSOR_INPUTS];
};

struct tbs_exec_event {
	/* comm, filename, parent comm; NULL-terminated like argv. */
	const char *str[TBS_EXEC_INPUTS + 1];
	pid_t pid;
};

/* ---- kernel profiles and network containment (feature level 2: 1.1.0 and later) ---- */

/* Hooks the vendor's lab validated on a kernel build. */
#define TBS_KP_EXEC		0x1	/* the sched_process_exec tracepoint */
#define TBS_KP_CONTAIN		0x2	/* netfilter hooks for network containment */
#define TBS_KP_KNOWN		(TBS_KP_EXEC | TBS_KP_CONTAIN)

/* One kernel build the lab tested; the table is generated there and compiled in (kprofile.c). */
struct tbs_kernel_profile {
	const char *release;		/* utsname release, e.g. "6.1.0-56-amd64" */
	u32 hooks;			/* TBS_KP_* */
};

/*
 * Bit 15 of skb->mark: "this packet belongs to a contained host".  The sensor
 * believes the bit is its own (contain.c).
 */
#define TBS_CONTAIN_MARK	0x8000

#if TBS_FEATURE_LEVEL >= 2
/* kprofile.c */
const struct tbs_kernel_profile *tbs_find_kernel_profile(const char *release);
u32 tbs_apply_kernel_profile(const struct tbs_kernel_profile *profile, const char *release,
			     const char *version);

/* contain.c */
int tbs_contain_start(void);
void tbs_contain_stop(void);
#endif

/* content.c */
int tbs_parse_content(struct tbs_content *c, const u8 *data, size_t size);
void tbs_free_content(struct tbs_content *c);
int tbs_validate_content(const u8 *data, size_t size, char *why, size_t why_len);

/* match.c */
bool tbs_match_value(u32 op, u64 v, u64 operand);
unsigned int tbs_match_template(const struct tbs_template *tmpl, const struct tbs_rule *rules,
				u32 nrules, const struct tbs_event *ev);
unsigned int tbs_match_exec(const struct tbs_content *c, const struct tbs_exec_event *ev);
void tbs_build_event(struct tbs_event *ev);

#endif /* TBS_H */
