/*
 * nxg_ota: the pieces of a firmware update that need no platform (PROTOCOL.md §4, `_ota`).
 *
 * The server sends the protocol-internal command `_ota` with params
 * {"url","checksum","version","size"}; the core checks them (nxg_ota_parse) and hands them to
 * the port's nxg_ota_fn (nxg_client.h). The port downloads `url` with the device's token
 * (resuming with `Range` after an interruption), verifies the SHA-256 (nxg_sha256.h) against
 * `checksum`, applies it, and reports the events ota_started / ota_progress / ota_applied /
 * ota_failed (each with "version") and then its new version in status as "fw".
 */
#ifndef NXG_OTA_H
#define NXG_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cJSON.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NXG_OTA_MAX_URL 256
#define NXG_OTA_MAX_VERSION 65

typedef struct {
    const char *url;      /* http:// or https://; borrowed from the command for the call */
    const char *checksum; /* SHA-256, 64 lowercase hex digits */
    const char *version;  /* the release's semantic version */
    uint64_t size;        /* bytes */
} nxg_ota_request_t;

/* Fills `out` from an `_ota` command's params (strings borrowed from `params`); false when a field
 * is missing or malformed (the command is then acked ok:false). */
bool nxg_ota_parse(const cJSON *params, nxg_ota_request_t *out);

/* Splits an http:// URL into host, port (80 when absent) and path (with the query). False for
 * another scheme, a bracketed or empty host, a bad port, or buffers too small. */
bool nxg_url_parse(const char *url, char *host, size_t host_len, int *port, char *path, size_t path_len);

typedef struct {
    int status;             /* 200, 206, 416, ... */
    int64_t content_length; /* -1 when absent */
    int64_t range_start;    /* Content-Range's first byte, -1 when absent */
    int64_t range_total;    /* Content-Range's total size, -1 when absent or "*" */
} nxg_http_head_t;

/* Parses an HTTP/1.x response head (status line and headers, up to and including the blank
 * line; `len` bytes, not NUL-terminated). False when it is not one. */
bool nxg_http_head_parse(const char *head, size_t len, nxg_http_head_t *out);

#ifdef __cplusplus
}
#endif

#endif /* NXG_OTA_H */
