/*
 * Firmware download for the host client: a plain HTTP/1.1 GET over a POSIX socket (one request
 * per connection), resumed with `Range: bytes=N-` after an interruption, verified with the core's
 * SHA-256, written to <dir>/firmware-<version>.bin (through a .part file, renamed when verified),
 * and the running version recorded in <dir>/current. https:// is the ESP32's (esp_https_ota).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "host_port.h"
#include "nxg_ota.h"
#include "nxg_sha256.h"

#define OTA_ATTEMPTS 5
#define OTA_TIMEOUT_S 10

static int open_socket(const char *host, int port)
{
    char service[8];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
    if (getaddrinfo(host, service, &hints, &found) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = found; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        struct timeval timeout = {.tv_sec = OTA_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    return fd;
}

static bool send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, 0);
        if (n <= 0) {
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* One GET from `*done` bytes on; appends to `out` and the hash. NULL when the connection ended
 * (complete or not: the caller compares `*done` with the size), else a reason to give up. */
static const char *fetch(host_ota_t *ota, const char *host, int port, const char *path, FILE *out, nxg_sha256_t *sha,
                         uint64_t *done)
{
    int fd = open_socket(host, port);
    if (fd < 0) {
        return NULL; /* may come back: counts as an attempt */
    }
    char request[NXG_OTA_MAX_URL + NXG_MAX_TOKEN_BYTES + 256];
    int len = snprintf(request, sizeof(request),
                       "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\nConnection: close\r\n", path,
                       host, port, ota->token);
    if (*done > 0) {
        len += snprintf(request + len, sizeof(request) - (size_t)len, "Range: bytes=%llu-\r\n",
                        (unsigned long long)*done);
    }
    len += snprintf(request + len, sizeof(request) - (size_t)len, "\r\n");
    if (len >= (int)sizeof(request) || !send_all(fd, request, (size_t)len)) {
        close(fd);
        return NULL;
    }
    char buf[16384];
    size_t have = 0;
    char *body = NULL;
    while (body == NULL) {
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have - 1, 0);
        if (n <= 0) {
            close(fd);
            return NULL;
        }
        have += (size_t)n;
        buf[have] = '\0';
        body = strstr(buf, "\r\n\r\n");
        if (body == NULL && have >= sizeof(buf) - 1) {
            close(fd);
            return "response head too large";
        }
    }
    body += 4;
    nxg_http_head_t head;
    if (!nxg_http_head_parse(buf, (size_t)(body - buf), &head)) {
        close(fd);
        return "not an HTTP response";
    }
    const char *why = NULL;
    if (head.status == 401 || head.status == 403 || head.status == 404) {
        why = head.status == 404 ? "the server has no such release for this device" : "the server refused the token";
    } else if (*done > 0 && (head.status != 206 || head.range_start != (int64_t)*done)) {
        why = "the server did not resume where the download stopped";
    } else if (*done == 0 && head.status != 200) {
        why = "unexpected HTTP status";
    }
    if (why != NULL) {
        close(fd);
        return why;
    }
    size_t extra = have - (size_t)(body - buf);
    while (true) {
        if (extra > 0) {
            if (*done + extra > ota->size || fwrite(body, 1, extra, out) != extra) {
                close(fd);
                return *done + extra > ota->size ? "more bytes than the release's size" : "cannot write the file";
            }
            nxg_sha256_update(sha, body, extra);
            *done += extra;
            if (ota->progress != NULL) {
                ota->progress(ota->user, *done, ota->size);
            }
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            break; /* end of this response, complete or cut */
        }
        body = buf;
        extra = (size_t)n;
    }
    close(fd);
    return NULL;
}

const char *host_ota_download(host_ota_t *ota)
{
    char host[128], path[NXG_OTA_MAX_URL];
    int port = 0;
    if (strncmp(ota->url, "https://", 8) == 0) {
        return "https downloads are the ESP32 port's (esp_https_ota); the host client speaks http only";
    }
    if (!nxg_url_parse(ota->url, host, sizeof(host), &port, path, sizeof(path))) {
        return "bad url";
    }
    char part[512], final[512], current[512];
    snprintf(part, sizeof(part), "%s/firmware-%s.bin.part", ota->dir, ota->version);
    snprintf(final, sizeof(final), "%s/firmware-%s.bin", ota->dir, ota->version);
    snprintf(current, sizeof(current), "%s/current", ota->dir);
    FILE *out = fopen(part, "wb");
    if (out == NULL) {
        return "cannot create the file in --ota-dir";
    }
    nxg_sha256_t sha;
    nxg_sha256_init(&sha);
    uint64_t done = 0;
    const char *why = NULL;
    for (int attempt = 0; attempt < OTA_ATTEMPTS && why == NULL && done < ota->size; attempt++) {
        if (attempt > 0 && ota->log != NULL) {
            char line[160];
            snprintf(line, sizeof(line), "ota %s: interrupted at %llu of %llu bytes, resuming with Range", ota->version,
                     (unsigned long long)done, (unsigned long long)ota->size);
            ota->log(ota->user, line);
        }
        uint64_t before = done;
        why = fetch(ota, host, port, path, out, &sha, &done);
        if (why == NULL && done == before) {
            struct timespec pause = {.tv_nsec = 200000000}; /* nothing came: do not spin on a server that is away */
            nanosleep(&pause, NULL);
        }
    }
    if (fclose(out) != 0 && why == NULL) {
        why = "cannot write the file";
    }
    if (why == NULL && done < ota->size) {
        why = "download incomplete after retries";
    }
    if (why == NULL) {
        uint8_t digest[NXG_SHA256_BYTES];
        char hex[NXG_SHA256_HEX_BYTES];
        nxg_sha256_final(&sha, digest);
        nxg_sha256_hex(digest, hex);
        if (strcmp(hex, ota->checksum) != 0) {
            why = "checksum mismatch";
        }
    }
    if (why != NULL) {
        remove(part);
        return why;
    }
    if (rename(part, final) != 0) {
        return "cannot rename the verified file";
    }
    FILE *marker = fopen(current, "w");
    if (marker == NULL || fprintf(marker, "%s\n", ota->version) < 0 || fclose(marker) != 0) {
        return "cannot record the new version";
    }
    return NULL;
}
