/*
 * libhide_cpu_features.so: hide SME / SME2 from a process on Linux and Android (LD_PRELOAD).
 *
 * XNNPACK picks its kernels at run time from cpuinfo, and cpuinfo reads the CPU's features
 * with getauxval(AT_HWCAP2) and prctl(PR_SME_GET_VL). Preloading this library in front of
 * libc makes those calls answer as a CPU without the hidden features would:
 *
 *   SME_KIT_HIDE_CPU_FEATURES=sme2       SME2 hidden: KleidiAI's SME1 kernels
 *   SME_KIT_HIDE_CPU_FEATURES=sme:sme2   SME and SME2 hidden: the NEON kernels
 *
 * Unset or empty hides nothing. "sme" alone also hides SME2 (SME2 needs SME). The list is
 * colon-separated because QEMU's -E splits its values on commas.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CONTROL_VARIABLE "SME_KIT_HIDE_CPU_FEATURES"
#define AT_HWCAP_TYPE 16
#define AT_HWCAP2_TYPE 26
#define PR_SME_SET_VL_OPTION 63
#define PR_SME_GET_VL_OPTION 64

/* Bit numbers from Linux arch/arm64/include/uapi/asm/hwcap.h. */
#define BIT(n) (1UL << (n))
/* AT_HWCAP2: SME and its first sub-features (I16I64 .. FA64). */
static const unsigned long kSmeHwcap2 = BIT(23) | BIT(24) | BIT(25) | BIT(26) | BIT(27) | BIT(28) |
                                        BIT(29) | BIT(30);
/* AT_HWCAP2: SME2, SME2p1 and the sub-features that came with them (I16I32, BI32I32, B16B16,
 * F16F16, LUTv2 and the FP8 forms). */
static const unsigned long kSme2Hwcap2 = BIT(37) | BIT(38) | BIT(39) | BIT(40) | BIT(41) | BIT(42) |
                                         BIT(57) | BIT(58) | BIT(59) | BIT(60) | BIT(61) | BIT(62);
/* AT_HWCAP: SME2p2 and the SME2 extensions listed there (SBITPERM, AES, SFEXPA, STMOP, SMOP4). */
static const unsigned long kSme2Hwcap = BIT(42) | BIT(43) | BIT(44) | BIT(45) | BIT(46) | BIT(47);

enum { HIDE_SME = 1, HIDE_SME2 = 2 };

/* Which features the control variable hides; a word it does not know stops the process with
 * one line, because running unmasked under a masked label would be a lie. */
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

static unsigned long masked(unsigned long type, unsigned long value) {
  if (type != AT_HWCAP_TYPE && type != AT_HWCAP2_TYPE) {
    return value;
  }
  int hidden = hidden_features();
  if (hidden & HIDE_SME2) {
    value &= ~(type == AT_HWCAP2_TYPE ? kSme2Hwcap2 : kSme2Hwcap);
  }
  if ((hidden & HIDE_SME) && type == AT_HWCAP2_TYPE) {
    value &= ~kSmeHwcap2;
  }
  return value;
}

typedef unsigned long (*getauxval_fn)(unsigned long);

static getauxval_fn real_getauxval(const char* name) {
  getauxval_fn real = (getauxval_fn)dlsym(RTLD_NEXT, name);
  /* bionic has no __getauxval: fall back to getauxval. */
  return real != NULL ? real : (getauxval_fn)dlsym(RTLD_NEXT, "getauxval");
}

unsigned long getauxval(unsigned long type) {
  return masked(type, real_getauxval("getauxval")(type));
}

unsigned long __getauxval(unsigned long type) {
  return masked(type, real_getauxval("__getauxval")(type));
}

int prctl(int option, ...) {
  va_list args;
  va_start(args, option);
  unsigned long arg2 = va_arg(args, unsigned long);
  unsigned long arg3 = va_arg(args, unsigned long);
  unsigned long arg4 = va_arg(args, unsigned long);
  unsigned long arg5 = va_arg(args, unsigned long);
  va_end(args);
  if ((option == PR_SME_GET_VL_OPTION || option == PR_SME_SET_VL_OPTION) &&
      (hidden_features() & HIDE_SME)) {
    errno = EINVAL; /* what a kernel on a CPU without SME answers */
    return -1;
  }
  return (int)syscall(SYS_prctl, option, arg2, arg3, arg4, arg5);
}
