/*
 * libhide_cpu_features.dylib: hide SME / SME2 from a process on macOS (DYLD_INSERT_LIBRARIES).
 *
 * XNNPACK picks its kernels at run time from cpuinfo, and on macOS cpuinfo reads the CPU's
 * features with sysctlbyname("hw.optional.arm.FEAT_SME2") and friends. This library
 * interposes sysctlbyname (dyld's __DATA,__interpose) and answers 0 for the hidden names,
 * as an M1-M3 Mac does:
 *
 *   SME_KIT_HIDE_CPU_FEATURES=sme2       hw.optional.arm.FEAT_SME2*
 *   SME_KIT_HIDE_CPU_FEATURES=sme:sme2   also hw.optional.arm.FEAT_SME*, SME_*, sme_* (the
 *                                        SME vector length hw.optional.arm.sme_max_svl_b)
 *
 * Unset or empty hides nothing; "sme" alone also hides SME2. dyld ignores DYLD_* variables
 * for SIP-protected and hardened binaries: the runner reports what it saw, and the pipeline
 * fails a run whose mask did not take effect.
 *
 * Build with -DHIDE_CPU_FEATURES_MATCH_ONLY to get only the name matching (no interposing),
 * which is how the tests check it on a host that is not a Mac.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONTROL_VARIABLE "SME_KIT_HIDE_CPU_FEATURES"

enum { HIDE_SME = 1, HIDE_SME2 = 2 };

/* Which features the control variable hides; an unknown word stops the process with one line. */
static int hidden_features(void) {
  const char* text = getenv(CONTROL_VARIABLE);
  int hidden = 0;
  while (text != NULL && *text != '\0') {
    size_t length = strcspn(text, ":");
    if (length == 3 && strncmp(text, "sme", 3) == 0) {
      hidden |= HIDE_SME | HIDE_SME2;
    } else if (length == 4 && strncmp(text, "sme2", 4) == 0) {
      hidden |= HIDE_SME2;
    } else if (length > 0) {
      fprintf(stderr, "error: %s='%s' names an unknown feature '%.*s'; use sme2 or sme:sme2\n",
              CONTROL_VARIABLE, getenv(CONTROL_VARIABLE), (int)length, text);
      _exit(2);
    }
    text += length + (text[length] == ':');
  }
  return hidden;
}

static int starts_with(const char* name, const char* prefix) {
  return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* 1 if the sysctl name reports a feature the control variable hides. */
int hide_cpu_features_hides(const char* name) {
  int hidden = hidden_features();
  if (name == NULL || hidden == 0) {
    return 0;
  }
  if ((hidden & HIDE_SME2) && starts_with(name, "hw.optional.arm.FEAT_SME2")) {
    return 1;
  }
  return (hidden & HIDE_SME) &&
         (starts_with(name, "hw.optional.arm.FEAT_SME") || starts_with(name, "hw.optional.arm.SME") ||
          starts_with(name, "hw.optional.arm.sme_"));
}

#ifndef HIDE_CPU_FEATURES_MATCH_ONLY
#include <sys/sysctl.h>

static int hiding_sysctlbyname(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  int result = sysctlbyname(name, oldp, oldlenp, newp, newlen);
  if (result == 0 && oldp != NULL && oldlenp != NULL && hide_cpu_features_hides(name)) {
    memset(oldp, 0, *oldlenp);
  }
  return result;
}

/* dyld replaces every other image's calls to sysctlbyname with hiding_sysctlbyname; calls made
 * from this library itself still reach the real one. */
__attribute__((used, section("__DATA,__interpose"))) static const struct {
  const void* replacement;
  const void* original;
} kInterposers[] = {{(const void*)hiding_sysctlbyname, (const void*)sysctlbyname}};
#endif
