/* A minimal `cat` for the emulated aarch64 device. Built static with aarch64-linux-gnu-gcc and run
 * under qemu-aarch64, it reads the files the guest sees: for /proc/cpuinfo that is QEMU's emulated
 * CPU (its Features line lists sme with -cpu max and not with -cpu max,sme=off), not the host's. */
#include <stdio.h>

int main(int argc, char **argv) {
  int status = 0;
  for (int i = 1; i < argc; i++) {
    FILE *file = fopen(argv[i], "r");
    if (!file) {
      fprintf(stderr, "cat: %s: No such file or directory\n", argv[i]);
      status = 1;
      continue;
    }
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, file)) > 0) fwrite(buffer, 1, n, stdout);
    fclose(file);
  }
  return status;
}
