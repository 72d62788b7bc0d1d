/* The token store of the ESP32 port: NVS namespace "nxg", keys "serial" and "token". */
#include "esp_log.h"
#include "nvs.h"
#include "port.h"

#define NAMESPACE "nxg"

static const char *TAG = "nxg_nvs";

static nxg_err_t load(void *ctx, char *serial, size_t serial_len, char *token, size_t token_len)
{
    (void)ctx;
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(NAMESPACE, NVS_READONLY, &nvs);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return NXG_ERR_STATE; /* first boot: nothing written yet */
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "open: %s", esp_err_to_name(err));
        return NXG_ERR_STORE;
    }
    err = nvs_get_str(nvs, "serial", serial, &serial_len);
    if (err == ESP_OK) {
        err = nvs_get_str(nvs, "token", token, &token_len);
    }
    nvs_close(nvs);
    return err == ESP_OK ? NXG_OK : NXG_ERR_STATE;
}

static nxg_err_t save(void *ctx, const char *serial, const char *token)
{
    (void)ctx;
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(NAMESPACE, NVS_READWRITE, &nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "open: %s", esp_err_to_name(err));
        return NXG_ERR_STORE;
    }
    err = nvs_set_str(nvs, "serial", serial);
    if (err == ESP_OK) {
        err = nvs_set_str(nvs, "token", token);
    }
    if (err == ESP_OK) {
        err = nvs_commit(nvs);
    }
    nvs_close(nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "save: %s", esp_err_to_name(err));
    }
    return err == ESP_OK ? NXG_OK : NXG_ERR_STORE;
}

static nxg_err_t erase(void *ctx)
{
    (void)ctx;
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(NAMESPACE, NVS_READWRITE, &nvs);
    if (err != ESP_OK) {
        return NXG_ERR_STORE;
    }
    err = nvs_erase_all(nvs);
    if (err == ESP_OK) {
        err = nvs_commit(nvs);
    }
    nvs_close(nvs);
    return err == ESP_OK ? NXG_OK : NXG_ERR_STORE;
}

nxg_store_t port_store_nvs(void)
{
    return (nxg_store_t){.ctx = NULL, .load = load, .save = save, .erase = erase};
}
