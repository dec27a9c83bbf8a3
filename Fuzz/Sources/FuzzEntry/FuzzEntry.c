#include <stddef.h>
#include <stdint.h>
#include "FuzzEntry.h"

extern int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
extern int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(int argc, char **argv) { return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput); }

int FuzzFrame_main(int argc, char **argv) { return run(argc, argv); }
int FuzzMessage_main(int argc, char **argv) { return run(argc, argv); }
int FuzzMembership_main(int argc, char **argv) { return run(argc, argv); }
int FuzzConfig_main(int argc, char **argv) { return run(argc, argv); }
