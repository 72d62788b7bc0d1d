/*
 * nxg_sha256: a small portable SHA-256 (FIPS 180-4) for verifying firmware downloads.
 *
 * No allocation, no platform call: the context is 108 bytes on the caller's side. Feed the data
 * in pieces of any size; the digest is the same as one call over the whole.
 */
#ifndef NXG_SHA256_H
#define NXG_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NXG_SHA256_BYTES 32
#define NXG_SHA256_HEX_BYTES 65 /* 64 lowercase hex digits and the NUL */

typedef struct {
    uint32_t state[8];
    uint64_t length; /* bytes fed so far */
    uint8_t block[64];
    size_t fill; /* bytes waiting in block */
} nxg_sha256_t;

void nxg_sha256_init(nxg_sha256_t *ctx);
void nxg_sha256_update(nxg_sha256_t *ctx, const void *data, size_t len);
void nxg_sha256_final(nxg_sha256_t *ctx, uint8_t digest[NXG_SHA256_BYTES]);
/* The digest as 64 lowercase hex digits, NUL-terminated (the server's `checksum`). */
void nxg_sha256_hex(const uint8_t digest[NXG_SHA256_BYTES], char hex[NXG_SHA256_HEX_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* NXG_SHA256_H */
