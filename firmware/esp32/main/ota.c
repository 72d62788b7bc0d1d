/* esp_https_ota behind the core's `_ota` (see ota.h). Runs in the nxg task only. */
#include "ota.h"

#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_http_client.h"
#include "esp_https_ota.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_system.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nxg_sha256.h"
#include "sdkconfig.h"

static const char *TAG = "nxg-ota";

static struct {
    bool pending;
    char url[NXG_OTA_MAX_URL];
    char checksum[NXG_SHA256_HEX_BYTES];
    char version[NXG_OTA_MAX_VERSION];
    uint64_t size;
} job;
static char bearer[NXG_MAX_TOKEN_BYTES + 8];

const char *ota_accept(void *user, const nxg_ota_request_t *request)
{
    (void)user;
    if (job.pending) {
        return "an update is already running";
    }
    snprintf(job.url, sizeof(job.url), "%s", request->url);
    snprintf(job.checksum, sizeof(job.checksum), "%s", request->checksum);
    snprintf(job.version, sizeof(job.version), "%s", request->version);
    job.size = request->size;
    job.pending = true;
    return NULL;
}

bool ota_pending(void)
{
    return job.pending;
}

const char *ota_running_version(void)
{
    return esp_app_get_description()->version;
}

static void report(nxg_client_t *client, const char *type, int progress, const char *error)
{
    cJSON *event = cJSON_CreateObject();
    if (event != NULL && cJSON_AddStringToObject(event, "type", type) != NULL &&
        cJSON_AddStringToObject(event, "category", "ota") != NULL &&
        cJSON_AddStringToObject(event, "version", job.version) != NULL &&
        (progress < 0 || cJSON_AddNumberToObject(event, "progress", progress) != NULL) &&
        (error == NULL || cJSON_AddStringToObject(event, "error", error) != NULL)) {
        nxg_client_send(client, NXG_CHANNEL_EVENT, event);
    }
    cJSON_Delete(event);
}

static esp_err_t add_token(esp_http_client_handle_t http)
{
    return esp_http_client_set_header(http, "Authorization", bearer);
}

/* SHA-256 of the first `size` bytes written to `partition`, as hex. */
static esp_err_t written_checksum(const esp_partition_t *partition, uint64_t size, char hex[NXG_SHA256_HEX_BYTES])
{
    static uint8_t buf[4096];
    nxg_sha256_t sha;
    nxg_sha256_init(&sha);
    for (uint64_t at = 0; at < size; at += sizeof(buf)) {
        size_t n = size - at < sizeof(buf) ? (size_t)(size - at) : sizeof(buf);
        esp_err_t err = esp_partition_read(partition, (size_t)at, buf, n);
        if (err != ESP_OK) {
            return err;
        }
        nxg_sha256_update(&sha, buf, n);
    }
    uint8_t digest[NXG_SHA256_BYTES];
    nxg_sha256_final(&sha, digest);
    nxg_sha256_hex(digest, hex);
    return ESP_OK;
}

void ota_run(nxg_client_t *client)
{
    snprintf(bearer, sizeof(bearer), "Bearer %s", client->token);
    esp_http_client_config_t http = {
        .url = job.url,
        .timeout_ms = 10000,
        .keep_alive_enable = true,
    };
    esp_https_ota_config_t config = {
        .http_config = &http,
        .http_client_init_cb = add_token,
#if CONFIG_NXG_OTA_PARTIAL
        .partial_http_download = true, /* Range requests of max_http_request_size bytes */
        .max_http_request_size = 64 * 1024,
#endif
    };
    const esp_partition_t *target = esp_ota_get_next_update_partition(NULL);
    esp_https_ota_handle_t handle = NULL;
    const char *why = NULL;
    report(client, "ota_started", 0, NULL);
    if (target == NULL || esp_https_ota_begin(&config, &handle) != ESP_OK) {
        why = target == NULL ? "no OTA partition (partition table without ota_0/ota_1)" : "download did not start";
    }
    int reported = 0;
    while (why == NULL) {
        esp_err_t err = esp_https_ota_perform(handle);
        int read = esp_https_ota_get_image_len_read(handle);
        int quarter = job.size > 0 ? (int)((uint64_t)read * 4 / job.size) : 0;
        if (quarter > reported && quarter < 4) {
            reported = quarter;
            report(client, "ota_progress", quarter * 25, NULL);
        }
        if (err == ESP_OK) {
            break;
        }
        if (err != ESP_ERR_HTTPS_OTA_IN_PROGRESS) {
            why = "download failed";
        }
    }
    char hex[NXG_SHA256_HEX_BYTES];
    if (why == NULL && (!esp_https_ota_is_complete_data_received(handle) ||
                        (uint64_t)esp_https_ota_get_image_len_read(handle) != job.size)) {
        why = "download incomplete";
    }
    if (why == NULL && (written_checksum(target, job.size, hex) != ESP_OK || strcmp(hex, job.checksum) != 0)) {
        why = "checksum mismatch";
    }
    if (why != NULL) {
        if (handle != NULL) {
            esp_https_ota_abort(handle);
        }
        ESP_LOGW(TAG, "ota %s failed: %s", job.version, why);
        report(client, "ota_failed", -1, why);
        job.pending = false;
        return;
    }
    if (esp_https_ota_finish(handle) != ESP_OK) { /* validates the image, selects the partition */
        report(client, "ota_failed", -1, "image not valid");
        job.pending = false;
        return;
    }
    ESP_LOGI(TAG, "ota %s: checksum ok, applied; restarting", job.version);
    report(client, "ota_applied", 100, NULL);
    nxg_client_stop(client); /* a clean disconnect, so the event goes out first */
    vTaskDelay(pdMS_TO_TICKS(500));
    esp_restart();
}
