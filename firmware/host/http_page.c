/*
 * The host client's web page over the server's HTTP proxy (PROTOCOL §2, seed 003's proxy tokens):
 * a request arrives on nxg/{S}/http/req as {"id","method","path","headers","body_b64"}; the answer
 * goes to nxg/{S}/http/res as {"id","status","headers","body_b64"}. `GET /` is the device's status
 * as JSON; anything else is 404. Kept apart from the portable core: a device without a web page
 * needs none of it.
 */
#include <stdio.h>
#include <string.h>

#include "host_port.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding; false when `out` is too small. */
static bool base64_encode(const char *in, size_t len, char *out, size_t out_len)
{
    if ((len + 2) / 3 * 4 + 1 > out_len) {
        return false;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < len) {
            v |= (unsigned char)in[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= (unsigned char)in[i + 2];
        }
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return true;
}

/* The page: what a technician wants to see first. */
static int status_page(const host_http_t *h, char *out, size_t out_len)
{
    uint64_t uptime_s = (host_now_ms() - h->started_ms) / 1000u;
    return snprintf(out, out_len,
                    "{\"serial\":\"%s\",\"state\":\"%s\",\"turn1\":\"%s\",\"led\":\"%s\",\"uptime_s\":%llu}",
                    h->client->serial, nxg_state_name(h->client->state), *h->turn1_open ? "open" : "closed",
                    *h->led_on ? "on" : "off", (unsigned long long)uptime_s);
}

void host_http_answer(void *user, const char *topic, const char *data, size_t len)
{
    host_http_t *h = user;
    cJSON *request = len <= NXG_MAX_MESSAGE_BYTES ? cJSON_ParseWithLength(data, len) : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(request, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(request, "method");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(request, "path");
    if (!cJSON_IsString(id) || !cJSON_IsString(method) || !cJSON_IsString(path)) {
        cJSON_Delete(request); /* nothing to answer to: the server times the request out */
        return;
    }
    char body[256];
    char body_b64[352];
    int status = 404;
    int body_len = snprintf(body, sizeof body, "{\"error\":\"not found\"}");
    bool root = strcmp(path->valuestring, "/") == 0 || strncmp(path->valuestring, "/?", 2) == 0;
    if (strcmp(method->valuestring, "GET") == 0 && root) {
        status = 200;
        body_len = status_page(h, body, sizeof body);
    }
    if (body_len < 0 || (size_t)body_len >= sizeof body || !base64_encode(body, (size_t)body_len, body_b64, sizeof body_b64)) {
        status = 500;
        body_b64[0] = '\0';
    }
    char answer[NXG_MAX_MESSAGE_BYTES];
    int n = snprintf(answer, sizeof answer,
                     "{\"id\":\"%.64s\",\"status\":%d,\"headers\":{\"content-type\":\"application/json\"},"
                     "\"body_b64\":\"%s\"}",
                     id->valuestring, status, body_b64);
    cJSON_Delete(request);
    char reply_topic[NXG_MAX_SERIAL_BYTES + 24];
    size_t base = strlen(topic) - strlen("/req"); /* nxg/{S}/http/req → nxg/{S}/http/res */
    if (n < 0 || (size_t)n >= sizeof answer || base + 5 > sizeof reply_topic) {
        return;
    }
    memcpy(reply_topic, topic, base);
    memcpy(reply_topic + base, "/res", 5);
    if (h->transport->base.publish(h->transport->base.ctx, reply_topic, answer, (size_t)n) != 0) {
        printf("http: answer not sent\n");
    }
}
