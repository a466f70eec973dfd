// SHA-256 whose running state can be saved and restored: an S3 upload's chunks may arrive at
// different replicas, and its digest must be known before the parts are assembled under it.
// swift-crypto's SHA256 keeps its state private; the BoringSSL copy it links (symbols prefixed
// CCryptoBoringSSL_) has the classic SHA256_Init/Update/Final over a plain context struct, so
// the registry calls those and stores the struct's bytes with the upload.
#ifndef LATHE_SHA256_STATE_H
#define LATHE_SHA256_STATE_H

#include <stddef.h>
#include <stdint.h>

// BoringSSL's SHA256_CTX (sha256_state_st): eight chaining words, the bit count, the partial
// block and its fill, the digest length. Nothing reads the fields here; their size is what
// matters, and the static assertion holds it to BoringSSL's.
typedef struct {
    uint32_t h[8];
    uint32_t Nl, Nh;
    uint8_t data[64];
    unsigned num, md_len;
} lathe_sha256_ctx;

_Static_assert(sizeof(lathe_sha256_ctx) == 112, "lathe_sha256_ctx must match BoringSSL's SHA256_CTX");

int CCryptoBoringSSL_SHA256_Init(lathe_sha256_ctx *ctx);
int CCryptoBoringSSL_SHA256_Update(lathe_sha256_ctx *ctx, const void *data, size_t len);
int CCryptoBoringSSL_SHA256_Final(uint8_t out[32], lathe_sha256_ctx *ctx);

#endif
