// SPDX-License-Identifier: GPL-2.0
/*
 * testbed_sensor: per-kernel-build profiles (sensor 1.1.0 and later).
 *
 * !!! DELIBERATELY DEFECTIVE.  NEVER LOAD THIS MODULE ON A REAL MACHINE. !!!
 *
 * Release 1.1.0 hooks more of the kernel than 1.0.0 (network containment,
 * contain.c), and which hooks are safe on which kernel build is measured in
 * the vendor's lab: every kernel the lab tested gets a profile, and the table
 * of profiles is generated there and compiled into the module
 * (TBS_KERNEL_PROFILES, from build_candidate.py --tested-kernel through the
 * make variable TBS_TESTED_KERNELS).  At load the sensor identifies the
 * running kernel as sensors do, by the utsname release of the initial UTS
 * namespace (a container's namespace may claim anything), looks its profile
 * up and applies it.
 *
 * The defect -- the April 2024 incident: "Debian stable with the N-1 kernel
 * was not in the vendor's test matrix" -- is that the code applying the
 * profile assumes there is one.  The module is built, and loads, for every
 * kernel the package supports, but the table only holds the kernels the lab
 * tested; on any other kernel the lookup returns NULL and reading the
 * profile's hooks is a NULL pointer dereference (address 0x8) at module init:
 * at install, and again at every boot.  No panic(), no BUG().  The validating
 * build checks the lookup and runs with the exec hook only.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/string.h>

#include "tbs.h"

#ifndef TBS_KERNEL_PROFILES
#define TBS_KERNEL_PROFILES
#endif

/* What the lab validated on each tested build: every hook 1.1.0 has. */
#define TBS_PROFILE(rel) { .release = (rel), .hooks = TBS_KP_EXEC | TBS_KP_CONTAIN },

static const struct tbs_kernel_profile tbs_kernel_profiles[] = {
	TBS_KERNEL_PROFILES
	{ .release = NULL },	/* end of the table */
};

const struct tbs_kernel_profile *tbs_find_kernel_profile(const char *release)
{
	const struct tbs_kernel_profile *p;

	for (p = tbs_kernel_profiles; p->release; p++)
		if (!strcmp(p->release, release))
			return p;
	return NULL;
}

/* The hooks to set up on this kernel. */
noinline __noclone u32 tbs_apply_kernel_profile(const struct tbs_kernel_profile *profile,
						const char *release, const char *version)
{
	u32 hooks;

	if (TBS_VALIDATE && !profile) {
		pr_warn("kernel %s (%s) was not tested by the vendor: running with the exec hook only\n",
			release, version);
		return TBS_KP_EXEC;
	}
	hooks = profile->hooks & TBS_KP_KNOWN;
	pr_info("kernel %s (%s): tested build, profile hooks:%s%s\n", release, version,
		hooks & TBS_KP_EXEC ? " exec" : "", hooks & TBS_KP_CONTAIN ? " containment" : "");
	return hooks;
}
