#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer): parses the flags in argv and
/// fuzzes `callback`. The harnesses call it from their own entry point, because SwiftPM names
/// an executable's entry point MODULE_main and links `main` to it, so libFuzzer's own `main`
/// is never used.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
