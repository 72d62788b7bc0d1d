/* The platform-free pieces of a firmware update (see nxg_ota.h). */
#include "nxg_ota.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool nxg_ota_parse(const cJSON *params, nxg_ota_request_t *out)
{
    if (!cJSON_IsObject(params) || out == NULL) {
        return false;
    }
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(params, "url");
    const cJSON *checksum = cJSON_GetObjectItemCaseSensitive(params, "checksum");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(params, "version");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(params, "size");
    if (!cJSON_IsString(url) || !cJSON_IsString(checksum) || !cJSON_IsString(version) || !cJSON_IsNumber(size)) {
        return false;
    }
    size_t url_len = strlen(url->valuestring), version_len = strlen(version->valuestring);
    if ((strncmp(url->valuestring, "http://", 7) != 0 && strncmp(url->valuestring, "https://", 8) != 0) ||
        url_len >= NXG_OTA_MAX_URL || version_len == 0 || version_len >= NXG_OTA_MAX_VERSION ||
        strlen(checksum->valuestring) != 64 || size->valuedouble < 0 || size->valuedouble > 9007199254740992.0) {
        return false;
    }
    for (const char *p = checksum->valuestring; *p != '\0'; p++) {
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p)) {
            return false;
        }
    }
    for (const char *p = version->valuestring; *p != '\0'; p++) {
        /* it names a file on the device: semver's characters only */
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '+') {
            return false;
        }
    }
    out->url = url->valuestring;
    out->checksum = checksum->valuestring;
    out->version = version->valuestring;
    out->size = (uint64_t)size->valuedouble;
    return true;
}

bool nxg_url_parse(const char *url, char *host, size_t host_len, int *port, char *path, size_t path_len)
{
    if (url == NULL || strncmp(url, "http://", 7) != 0) {
        return false;
    }
    const char *start = url + 7;
    const char *slash = strchr(start, '/');
    const char *end = slash != NULL ? slash : start + strlen(start);
    const char *colon = memchr(start, ':', (size_t)(end - start));
    const char *host_end = colon != NULL ? colon : end;
    size_t n = (size_t)(host_end - start);
    if (n == 0 || n >= host_len || *start == '[') {
        return false;
    }
    memcpy(host, start, n);
    host[n] = '\0';
    *port = 80;
    if (colon != NULL) {
        char *stop = NULL;
        long value = strtol(colon + 1, &stop, 10);
        if (stop != end || value <= 0 || value > 65535) {
            return false;
        }
        *port = (int)value;
    }
    const char *rest = slash != NULL ? slash : "/";
    if (strlen(rest) >= path_len) {
        return false;
    }
    memcpy(path, rest, strlen(rest) + 1);
    return true;
}

/* The value of header `name` (case-insensitive) in `head`, or NULL; `*len` its length. */
static const char *header(const char *head, size_t size, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    const char *line = memchr(head, '\n', size);
    const char *end = head + size;
    while (line != NULL && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) {
            break;
        }
        if ((size_t)(eol - line) > name_len && line[name_len] == ':') {
            bool same = true;
            for (size_t i = 0; i < name_len && same; i++) {
                same = tolower((unsigned char)line[i]) == tolower((unsigned char)name[i]);
            }
            if (same) {
                const char *value = line + name_len + 1;
                while (value < eol && (*value == ' ' || *value == '\t')) {
                    value++;
                }
                const char *stop = eol;
                while (stop > value && (stop[-1] == '\r' || stop[-1] == ' ')) {
                    stop--;
                }
                *len = (size_t)(stop - value);
                return value;
            }
        }
        line = eol;
    }
    return NULL;
}

static int64_t number(const char *text, size_t len, const char **after)
{
    int64_t value = 0;
    size_t i = 0;
    for (; i < len && isdigit((unsigned char)text[i]) && value < (INT64_MAX - 9) / 10; i++) {
        value = value * 10 + (text[i] - '0');
    }
    *after = text + i;
    return i == 0 ? -1 : value;
}

bool nxg_http_head_parse(const char *head, size_t len, nxg_http_head_t *out)
{
    if (head == NULL || out == NULL || len < 12 || strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ') {
        return false;
    }
    const char *after = NULL;
    int64_t status = number(head + 9, 3, &after);
    if (status < 100 || after != head + 12) {
        return false;
    }
    out->status = (int)status;
    out->content_length = out->range_start = out->range_total = -1;
    size_t value_len = 0;
    const char *value = header(head, len, "Content-Length", &value_len);
    if (value != NULL) {
        out->content_length = number(value, value_len, &after);
    }
    value = header(head, len, "Content-Range", &value_len);
    if (value != NULL && value_len > 6 && strncmp(value, "bytes ", 6) == 0) {
        /* bytes first-last/total */
        out->range_start = number(value + 6, value_len - 6, &after);
        const char *slash = memchr(value, '/', value_len);
        if (slash != NULL) {
            out->range_total = number(slash + 1, (size_t)(value + value_len - slash - 1), &after);
        }
    }
    return true;
}
