// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor: the rule matchers.
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 *
 * Scan rules run once, at sensor start, on an event describing the loading
 * task: the event's 20 inputs are mapped through the content's template into
 * a field vector, reading the TBS_TEMPLATE_FIELDS descriptors the sensor
 * expects however many the content defined.  A zero-filled file has
 * field_count 0, the template's field array is ZERO_SIZE_PTR (0x10), and
 * reading field 0 through it is a page fault at address 0x10.  Each rule's
 * first criterion is its key, checked first as a quick reject; every rule has
 * one -- except the all-zero rules a truncated file reads past its end.
 *
 * Exec rules run at every exec (see main.c), on string inputs hashed only
 * when a criterion asks for them.  Their input index is trusted: content
 * written for a template with a 4th exec input reads the event's NULL
 * terminator, and hashing it faults at address 0 -- but only when the rule's
 * earlier criteria matched, i.e. only when the matching program runs.  That
 * is the July 2024 Channel File 291 pattern: 21 fields against 20 inputs,
 * harmless until a matching event came along.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/stringhash.h>
#include <linux/utsname.h>

#include "tbs.h"

bool tbs_match_value(u32 op, u64 v, u64 operand)
{
	switch (op) {
	case TBS_OP_ANY:
		return true;
	case TBS_OP_EQ:
		return v == operand;
	case TBS_OP_NE:
		return v != operand;
	case TBS_OP_MASK:
		return (v & operand) != 0;
	case TBS_OP_LT:
		return v < operand;
	case TBS_OP_GT:
		return v > operand;
	default:
		return false;
	}
}

static bool tbs_match_criterion(const struct tbs_criterion *c, const u64 *vec)
{
	return tbs_match_value(c->op, vec[c->field], c->value);
}

/*
 * Evaluate the scan rules against one event.  Returns the number of matches.
 */
noinline __noclone unsigned int tbs_match_template(const struct tbs_template *tmpl,
						   const struct tbs_rule *rules, u32 nrules,
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
		bool hit;

		if (r->event != TBS_EVENT_SCAN)
			continue;
		/* Quick reject on the rule's key, its first criterion. */
		hit = tbs_match_criterion(&r->crit[0], vec);
		for (j = 1; j < r->ncrit && hit; j++)
			hit = tbs_match_criterion(&r->crit[j], vec);
		if (hit) {
			matched++;
			if (r->action)
				pr_info("rule %u matched (pid %llu)\n", r->id, ev->inputs[0]);
		}
	}
	return matched;
}

/* FNV-1a 32 of a NUL-terminated string: what exec criteria compare with. */
static noinline u32 tbs_hash_input(const char *s)
{
	u32 h = 0x811c9dc5;

	for (; *s; s++) {
		h ^= (u8)*s;
		h *= 0x01000193;
	}
	return h;
}

static noinline bool tbs_match_exec_rule(const struct tbs_rule *r, const struct tbs_exec_event *ev)
{
	u32 j;

	for (j = 0; j < r->ncrit; j++) {
		const struct tbs_criterion *c = &r->crit[j];

		if (c->op == TBS_OP_ANY)
			continue;
		/* Hash an input only when a criterion needs it: exec is a hot path. */
		if (!tbs_match_value(c->op, tbs_hash_input(ev->str[c->field]), c->value))
			return false;
	}
	return true;
}

/* Evaluate the exec rules against one exec; returns the number of matches. */
unsigned int tbs_match_exec(const struct tbs_content *c, const struct tbs_exec_event *ev)
{
	unsigned int matched = 0;
	u32 i;

	for (i = 0; i < c->nrules; i++) {
		const struct tbs_rule *r = &c->rules[i];

		if (r->event != TBS_EVENT_EXEC || !tbs_match_exec_rule(r, ev))
			continue;
		matched++;
		if (r->action)
			pr_notice("rule %u matched: exec of %s (pid %d, parent %s)\n",
				  r->id, ev->str[0], ev->pid, ev->str[2]);
	}
	return matched;
}

void tbs_build_event(struct tbs_event *ev)
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
