/*
 * Firmware updates on the ESP32 (`_ota`, PROTOCOL.md §4): the same contract as the host client.
 *
 * ota_accept() is the core's nxg_ota_fn: it only copies the request. ota_run(), from the nxg task,
 * downloads the image with esp_https_ota into the next OTA partition (the device's token as
 * `Authorization: Bearer`; with CONFIG_NXG_OTA_PARTIAL, in Range requests of a bounded size),
 * reports ota_started / ota_progress, checks the SHA-256 of the written image against `checksum`,
 * then reports ota_applied, selects the new partition and restarts. Any failure: ota_failed with
 * the reason, and the running image stays. After the restart the device reports the new image's
 * version (its PROJECT_VER, esp_app_get_description()) in status as "fw": upload a release under
 * the same version string.
 */
#pragma once

#include <stdbool.h>

#include "nxg_client.h"

const char *ota_accept(void *user, const nxg_ota_request_t *request);
bool ota_pending(void);
void ota_run(nxg_client_t *client);
/* The running image's version (status "fw"). */
const char *ota_running_version(void);
