// SHA-256 (FIPS 180-4): wasi-libc has no digest, and the sandbox has no host crypto.
#ifndef PII_SHA256_H
#define PII_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t block[64];
    size_t used;
} sha256_t;

void sha256_init(sha256_t *ctx);
void sha256_update(sha256_t *ctx, const uint8_t *data, size_t len);
// Writes the digest as 64 lowercase hex characters (no terminator).
void sha256_hex(sha256_t *ctx, char out[64]);
#endif
