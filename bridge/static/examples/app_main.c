/*
 * NXG example device: pairs with the connection code of config.h, keeps its token in NVS,
 * sends a reading every CONFIG_NXG_TELEMETRY_INTERVAL_MS, reports status changes, raises an
 * event at boot, obeys two commands: turn1 open/close and led on/off, and takes firmware updates
 * (`_ota`, ota.c: esp_https_ota, SHA-256 checked, the version reported as "fw"). The protocol itself
 * (pairing, auth, reconnect backoff, re-pairing, acks, manifest) is the portable core's
 * (components/nxg_client), the same code as the host client nxg-device.
 *
 * idf.py menuconfig → "NXG device": Wi-Fi, transport (MQTT or the WebSocket gateway),
 * server URL and connection code (both default to config.h).
 */
#include <stdio.h>
#include <string.h>

#include "config.h" /* downloaded from GET /api/devices/:serial/config.h */
#include "driver/gpio.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs_flash.h"
#include "nxg_client.h"
#include "ota.h"
#include "port.h"
#include "sdkconfig.h"

#define LED_GPIO GPIO_NUM_2   /* the on-board LED of most ESP32 DevKits */
#define TURN1_GPIO GPIO_NUM_4 /* a relay driving the door (turn1) */
#define NXG_TASK_STACK 8192 /* esp_https_ota (TLS included) runs in this task */

static const char *TAG = "nxg";

/* the client and what the handlers change; touched only by the nxg task */
static nxg_client_t client;
static bool turn1_open;
static bool led_on;
static bool status_dirty = true;
static char server_uri[128];

static void on_turn1(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)user;
    turn1_open = strcmp(cmd->action, "open") == 0;
    if (gpio_set_level(TURN1_GPIO, turn1_open) != ESP_OK) {
        reply->error = "relay did not switch";
        return;
    }
    status_dirty = true;
    reply->result = cJSON_CreateObject(); /* the core sends it with the ack, then frees it */
    if (reply->result != NULL && cJSON_AddStringToObject(reply->result, "turn1", turn1_open ? "open" : "closed") == NULL) {
        cJSON_Delete(reply->result);
        reply->result = NULL;
    }
}

static void on_led(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)user;
    led_on = strcmp(cmd->action, "on") == 0;
    if (gpio_set_level(LED_GPIO, led_on) != ESP_OK) {
        reply->error = "led did not switch";
        return;
    }
    status_dirty = true;
}

static const char *const TURN1_ACTIONS[] = {"open", "close", NULL};
static const char *const LED_ACTIONS[] = {"on", "off", NULL};

static void log_line(void *user, const char *line)
{
    (void)user;
    ESP_LOGI(TAG, "%s", line);
}

static uint32_t random_u32(void *user)
{
    (void)user;
    return esp_random();
}

static void send_status(void)
{
    cJSON *status = cJSON_CreateObject();
    if (status != NULL && cJSON_AddStringToObject(status, "turn1", turn1_open ? "open" : "closed") != NULL &&
        cJSON_AddStringToObject(status, "led", led_on ? "on" : "off") != NULL &&
        cJSON_AddStringToObject(status, "fw", ota_running_version()) != NULL &&
        nxg_client_send(&client, NXG_CHANNEL_STATUS, status) == NXG_OK) {
        status_dirty = false;
    }
    cJSON_Delete(status);
}

static void send_boot_event(void)
{
    cJSON *event = cJSON_CreateObject();
    if (event != NULL && cJSON_AddStringToObject(event, "type", "boot") != NULL &&
        cJSON_AddStringToObject(event, "severity", "Info") != NULL &&
        cJSON_AddStringToObject(event, "category", "system") != NULL) {
        nxg_err_t err = nxg_client_send(&client, NXG_CHANNEL_EVENT, event);
        if (err != NXG_OK) {
            ESP_LOGW(TAG, "boot event not sent: %s", nxg_err_name(err));
        }
    }
    cJSON_Delete(event);
}

static void send_telemetry(void)
{
    int64_t uptime_s = esp_timer_get_time() / 1000000;
    cJSON *reading = cJSON_CreateObject();
    /* stand-in for a sensor driver: replace with your own reading */
    double temp = 21.0 + (double)(uptime_s % 20) / 10.0;
    if (reading != NULL && cJSON_AddNumberToObject(reading, "temp", temp) != NULL &&
        cJSON_AddNumberToObject(reading, "uptime_s", (double)uptime_s) != NULL) {
        nxg_err_t err = nxg_client_send(&client, NXG_CHANNEL_TELEMETRY, reading);
        if (err != NXG_OK) {
            ESP_LOGW(TAG, "reading not sent: %s", nxg_err_name(err));
        }
    }
    cJSON_Delete(reading);
}

/* The one task that owns the client: transport events, timers, readings. */
static void nxg_task(void *arg)
{
    (void)arg;
    int64_t next_reading_ms = 0;
    bool was_online = false;
    bool booted = false;
    for (;;) {
        port_dispatch(&client, 100);
        int64_t now_ms = esp_timer_get_time() / 1000;
        nxg_client_tick(&client, (uint64_t)now_ms);
        bool online = client.state == NXG_STATE_ONLINE;
        if (online && !was_online) {
            status_dirty = true; /* the server learns the current state on every connect */
            if (!booted) {
                send_boot_event();
                booted = true;
            }
        }
        was_online = online;
        if (online && ota_pending()) {
            ota_run(&client); /* restarts into the new image when it is verified */
        }
        if (online && status_dirty) {
            send_status();
        }
        if (online && now_ms >= next_reading_ms) {
            send_telemetry();
            next_reading_ms = now_ms + CONFIG_NXG_TELEMETRY_INTERVAL_MS;
        }
    }
}

static esp_err_t gpio_setup(void)
{
    const gpio_config_t outputs = {
        .pin_bit_mask = (1ULL << LED_GPIO) | (1ULL << TURN1_GPIO),
        .mode = GPIO_MODE_OUTPUT,
        .pull_up_en = GPIO_PULLUP_DISABLE,
        .pull_down_en = GPIO_PULLDOWN_DISABLE,
        .intr_type = GPIO_INTR_DISABLE,
    };
    return gpio_config(&outputs);
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase()); /* the token is lost: the device pairs again */
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    ESP_ERROR_CHECK(gpio_setup());
    ESP_ERROR_CHECK(port_init());
    ESP_ERROR_CHECK(port_wifi_connect());

    const char *code = CONFIG_NXG_CONNECTION_CODE[0] != '\0' ? CONFIG_NXG_CONNECTION_CODE : NXG_CONNECTION_CODE;
#if CONFIG_NXG_TRANSPORT_WS
    if (CONFIG_NXG_BROKER_URL[0] != '\0') {
        snprintf(server_uri, sizeof(server_uri), "%s", CONFIG_NXG_BROKER_URL);
    } else {
        snprintf(server_uri, sizeof(server_uri), "ws://%s:%d%s", NXG_SERVER_HOST, NXG_HTTP_PORT, NXG_GATEWAY_PATH);
    }
    nxg_transport_t transport = port_transport_ws(server_uri);
#else
    if (CONFIG_NXG_BROKER_URL[0] != '\0') {
        snprintf(server_uri, sizeof(server_uri), "%s", CONFIG_NXG_BROKER_URL);
    } else {
        snprintf(server_uri, sizeof(server_uri), "mqtt://%s:%d", NXG_SERVER_HOST, NXG_MQTT_PORT);
    }
    nxg_transport_t transport = port_transport_mqtt(server_uri);
#endif
    ESP_LOGI(TAG, "device %s, server %s", NXG_DEVICE_SERIAL, server_uri);

    const nxg_config_t config = {
        .serial = NXG_DEVICE_SERIAL,
        .code = code,
        .pair_id = NULL, /* "pair-" + random hex */
        .transport = transport,
        .store = port_store_nvs(),
        .random = random_u32,
        .log = log_line,
        .user = NULL,
    };
    ESP_ERROR_CHECK(nxg_client_init(&client, &config) == NXG_OK ? ESP_OK : ESP_ERR_INVALID_ARG);
    ESP_ERROR_CHECK(nxg_client_on_command(&client, "turn1", TURN1_ACTIONS, "the door relay", on_turn1) == NXG_OK
                        ? ESP_OK
                        : ESP_ERR_NO_MEM);
    ESP_ERROR_CHECK(nxg_client_on_command(&client, "led", LED_ACTIONS, "the on-board LED", on_led) == NXG_OK
                        ? ESP_OK
                        : ESP_ERR_NO_MEM);
    ESP_ERROR_CHECK(nxg_client_on_ota(&client, ota_accept) == NXG_OK ? ESP_OK : ESP_ERR_INVALID_ARG);
    if (xTaskCreate(nxg_task, "nxg", NXG_TASK_STACK, NULL, 5, NULL) != pdPASS) {
        ESP_LOGE(TAG, "nxg task not created");
    }
}
