// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor: the content ("channel") file parser and, for the
 * validating build, the validator that runs before it.
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 *
 * The parser is the interpreter the buggy releases ship: it trusts the
 * counts, offsets and indices in the file because the content is "validated
 * upstream".  Release 1.0.0 additionally trusts that a rule has at most the
 * 4 criteria format 1 allows and decodes rules into a 4-entry stack buffer;
 * content using the compound rules introduced with 1.1.0 overruns that
 * buffer, and the kernel's stack protector panics (the Linux twin of the
 * 2023 DRIVER_OVERRAN_STACK_BUFFER bugcheck).  1.1.0 sizes the buffer for 16
 * criteria and checks the count against it.
 *
 * The validating build (TBS_VALIDATE) runs tbs_validate_content() first:
 * every count, offset and size is checked against the file length, and a
 * bad file is rejected with a reason instead of being parsed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "tbs.h"

void tbs_free_content(struct tbs_content *c)
{
	u32 i;

	if (!ZERO_OR_NULL_PTR(c->rules)) {
		for (i = 0; i < c->nrules; i++)
			kfree(c->rules[i].crit);
	}
	kfree(c->rules);
	kfree(c->tmpl.fields);
	memset(c, 0, sizeof(*c));
}

/*
 * Decode one rule at @p; return where the next rule starts.  The criteria
 * are decoded into a buffer on the stack, then copied to the heap: a rule
 * never has more than TBS_MAX_CRITERIA of them.  Only 1.1.0 and later check
 * that -- 1.0.0 trusts the content pipeline to ship format 1 rules.
 */
static noinline const u8 *tbs_decode_rule(struct tbs_rule *r, const u8 *p)
{
	const struct tbs_disk_rule *dr = (const void *)p;
	const struct tbs_disk_criterion *dc = (const void *)(dr + 1);
	struct tbs_criterion crit[TBS_MAX_CRITERIA];
	u32 j;

	r->id = le16_to_cpu(dr->rule_id);
	r->action = dr->action;
	r->event = le16_to_cpu(dr->event);
	r->ncrit = dr->field_count;
#if TBS_FEATURE_LEVEL >= 2
	if (r->ncrit > TBS_MAX_CRITERIA) {
		pr_err("rule %u has %u criteria, this sensor supports at most %u\n",
		       r->id, r->ncrit, TBS_MAX_CRITERIA);
		return ERR_PTR(-EINVAL);
	}
#endif
	for (j = 0; j < r->ncrit; j++) {
		crit[j].field = dc[j].field;
		crit[j].op = dc[j].op;
		crit[j].value = le64_to_cpu(dc[j].value);
	}
	/* kcalloc(0, ...) returns ZERO_SIZE_PTR, which passes the check below. */
	r->crit = kcalloc(r->ncrit, sizeof(*r->crit), GFP_KERNEL);
	if (!r->crit)
		return ERR_PTR(-ENOMEM);
	for (j = 0; j < r->ncrit; j++)
		r->crit[j] = crit[j];
	return (const u8 *)(dc + r->ncrit);
}

/*
 * Parse a content file.  Like the interpreter it imitates, this parser
 * trusts the counts and offsets in the file: the content is "validated
 * upstream" by the content pipeline, so the sensor does not re-check it.
 */
int tbs_parse_content(struct tbs_content *c, const u8 *data, size_t size)
{
	const struct tbs_disk_header *hdr = (const void *)data;
	const struct tbs_disk_field *dfield;
	const u8 *p;
	u32 i;

	if (size < sizeof(*hdr)) {
		pr_err("content file too short (%zu bytes)\n", size);
		return -EINVAL;
	}

	c->version = le32_to_cpu(hdr->content_version);
	c->flags = le32_to_cpu(hdr->flags);
	c->tmpl.id = le32_to_cpu(hdr->template_id);
	c->tmpl.nfields = le32_to_cpu(hdr->field_count);
	/* kcalloc(0, ...) returns ZERO_SIZE_PTR, which passes the check below. */
	c->tmpl.fields = kcalloc(c->tmpl.nfields, sizeof(*c->tmpl.fields), GFP_KERNEL);
	if (!c->tmpl.fields)
		return -ENOMEM;

	dfield = (const void *)(data + le32_to_cpu(hdr->fields_offset));
	for (i = 0; i < c->tmpl.nfields; i++) {
		c->tmpl.fields[i].input = dfield[i].input;
		c->tmpl.fields[i].type = dfield[i].type;
	}

	c->nrules = le32_to_cpu(hdr->rule_count);
	c->rules = kcalloc(c->nrules, sizeof(*c->rules), GFP_KERNEL);
	if (!c->rules)
		goto fail_nomem;

	p = data + le32_to_cpu(hdr->rules_offset);
	for (i = 0; i < c->nrules; i++) {
		p = tbs_decode_rule(&c->rules[i], p);
		if (IS_ERR(p)) {
			int ret = PTR_ERR(p);

			tbs_free_content(c);
			return ret;
		}
		if (c->rules[i].event == TBS_EVENT_EXEC)
			c->nexec++;
	}
	return 0;

fail_nomem:
	tbs_free_content(c);
	return -ENOMEM;
}

/* ---- validating build ---------------------------------------------------- */

#define TBS_REJECT(...) do { scnprintf(why, why_len, __VA_ARGS__); return -EINVAL; } while (0)

static int tbs_validate_criteria(const struct tbs_disk_criterion *dc, u32 ncrit, u32 event,
				 u32 rule, char *why, size_t why_len)
{
	u32 j;

	for (j = 0; j < ncrit; j++) {
		u32 field = dc[j].field, op = dc[j].op;

		if (event == TBS_EVENT_SCAN) {
			if (field >= TBS_TEMPLATE_FIELDS)
				TBS_REJECT("rule %u criterion %u: field %u, the template has %u",
					   rule, j, field, TBS_TEMPLATE_FIELDS);
			if (op > TBS_OP_GT)
				TBS_REJECT("rule %u criterion %u: unknown operator %u", rule, j, op);
		} else {
			if (field >= TBS_EXEC_INPUTS)
				TBS_REJECT("rule %u criterion %u: exec input %u, the sensor supplies %u",
					   rule, j, field, TBS_EXEC_INPUTS);
			if (op != TBS_OP_ANY && op != TBS_OP_EQ && op != TBS_OP_NE)
				TBS_REJECT("rule %u criterion %u: operator %u is not valid on exec inputs",
					   rule, j, op);
		}
	}
	return 0;
}

static int tbs_validate_rules(const u8 *data, u64 start, u64 end, u32 nrules, u32 flags,
			      char *why, size_t why_len)
{
	u64 at = start;
	u32 i;

	for (i = 0; i < nrules; i++) {
		const struct tbs_disk_rule *dr;
		u32 ncrit, event;
		int ret;

		if (at + sizeof(*dr) > end)
			TBS_REJECT("rule %u of %u starts at offset %llu, past the end of the rules (%llu)",
				   i, nrules, at, end);
		dr = (const void *)(data + at);
		ncrit = dr->field_count;
		event = le16_to_cpu(dr->event);
		if (ncrit < 1 || ncrit > TBS_MAX_CRITERIA)
			TBS_REJECT("rule %u at offset %llu has %u criteria (1..%u allowed)",
				   i, at, ncrit, TBS_MAX_CRITERIA);
		if (ncrit > TBS_FORMAT1_CRITERIA && !(flags & TBS_CF_COMPOUND_RULES))
			TBS_REJECT("rule %u has %u criteria but the header does not declare compound rules",
				   i, ncrit);
		if (event != TBS_EVENT_SCAN && event != TBS_EVENT_EXEC)
			TBS_REJECT("rule %u: unknown event kind %u", i, event);
		at += sizeof(*dr);
		if (at + (u64)ncrit * sizeof(struct tbs_disk_criterion) > end)
			TBS_REJECT("rule %u: %u criteria run past the end of the rules (%llu)", i, ncrit, end);
		ret = tbs_validate_criteria((const void *)(data + at), ncrit, event, i, why, why_len);
		if (ret)
			return ret;
		at += (u64)ncrit * sizeof(struct tbs_disk_criterion);
	}
	if (at != end)
		TBS_REJECT("%u rules take %llu bytes, the header says rules_size %llu",
			   nrules, at - start, end - start);
	return 0;
}

/*
 * Check everything the parser trusts.  Returns 0, or -EINVAL with the
 * reason in @why.  Offsets are widened to u64 so no sum can wrap.
 */
int tbs_validate_content(const u8 *data, size_t size, char *why, size_t why_len)
{
	const struct tbs_disk_header *hdr = (const void *)data;
	u64 fields_off, fields_end, rules_off, rules_end, last;
	u32 flags, nfields, nrules, i;

	if (size < sizeof(*hdr))
		TBS_REJECT("file is %zu bytes, shorter than the %u-byte header", size, TBS_HEADER_SIZE);
	if (memcmp(hdr->magic, TBS_MAGIC, sizeof(hdr->magic)))
		TBS_REJECT("bad magic %*phN", (int)sizeof(hdr->magic), hdr->magic);
	if (le16_to_cpu(hdr->format_version) != TBS_FORMAT_VERSION)
		TBS_REJECT("format version %u, this sensor reads %u",
			   le16_to_cpu(hdr->format_version), TBS_FORMAT_VERSION);
	if (le16_to_cpu(hdr->header_size) != TBS_HEADER_SIZE)
		TBS_REJECT("header_size %u, expected %u", le16_to_cpu(hdr->header_size), TBS_HEADER_SIZE);
	flags = le32_to_cpu(hdr->flags);
	if (flags & ~TBS_KNOWN_FLAGS)
		TBS_REJECT("content needs features 0x%x this sensor (%s) does not have",
			   flags & ~TBS_KNOWN_FLAGS, TBS_VERSION);
	if (le32_to_cpu(hdr->template_id) != TBS_PROCESS_TEMPLATE)
		TBS_REJECT("template %u, this sensor evaluates template %u",
			   le32_to_cpu(hdr->template_id), TBS_PROCESS_TEMPLATE);

	nfields = le32_to_cpu(hdr->field_count);
	if (nfields != TBS_TEMPLATE_FIELDS)
		TBS_REJECT("field_count %u, the template has %u fields", nfields, TBS_TEMPLATE_FIELDS);
	fields_off = le32_to_cpu(hdr->fields_offset);
	fields_end = fields_off + (u64)nfields * sizeof(struct tbs_disk_field);
	if (fields_off < TBS_HEADER_SIZE || fields_end > size)
		TBS_REJECT("fields at %llu..%llu lie outside the file's %u..%zu",
			   fields_off, fields_end, TBS_HEADER_SIZE, size);
	for (i = 0; i < nfields; i++) {
		const struct tbs_disk_field *f = (const struct tbs_disk_field *)(data + fields_off) + i;

		if (f->input >= TBS_SENSOR_INPUTS)
			TBS_REJECT("field %u reads input %u, the sensor supplies %u",
				   i, f->input, TBS_SENSOR_INPUTS);
	}

	nrules = le32_to_cpu(hdr->rule_count);
	if (nrules < 1 || nrules > TBS_MAX_RULES)
		TBS_REJECT("rule_count %u (1..%u allowed)", nrules, TBS_MAX_RULES);
	rules_off = le32_to_cpu(hdr->rules_offset);
	rules_end = rules_off + le32_to_cpu(hdr->rules_size);
	if (rules_off < TBS_HEADER_SIZE || rules_end > size)
		TBS_REJECT("rules at %llu..%llu lie outside the file's %u..%zu",
			   rules_off, rules_end, TBS_HEADER_SIZE, size);
	if (rules_off < fields_end && fields_off < rules_end)
		TBS_REJECT("rules at %llu..%llu overlap fields at %llu..%llu",
			   rules_off, rules_end, fields_off, fields_end);
	if (tbs_validate_rules(data, rules_off, rules_end, nrules, flags, why, why_len))
		return -EINVAL;

	last = max(fields_end, rules_end);
	if (last != size)
		TBS_REJECT("file is %zu bytes, its sections end at %llu", size, last);
	return 0;
}
