/*
 * The /ws/gateway transport of the ESP32 port, on esp_websocket_client (component registry).
 * Pairing and auth travel in band, so the credentials of connect() are unused.
 */
#include <string.h>

#include "esp_log.h"
#include "esp_websocket_client.h"
#include "freertos/FreeRTOS.h"
#include "port.h"

static const char *TAG = "nxg_ws";

#define WS_OPCODE_TEXT 0x01
#define WS_SEND_TIMEOUT_MS 2000

typedef struct {
    const char *uri;
    esp_websocket_client_handle_t client;
    uint32_t generation;
    char rx[NXG_MAX_MESSAGE_BYTES]; /* fragments of one frame, joined */
} ws_t;

static ws_t ws;

static void ws_event_handler(void *handler_args, esp_event_base_t base, int32_t event_id, void *event_data)
{
    (void)base;
    uint32_t gen = (uint32_t)(uintptr_t)handler_args;
    esp_websocket_event_data_t *data = event_data;
    switch ((esp_websocket_event_id_t)event_id) {
    case WEBSOCKET_EVENT_CONNECTED:
        port_post(PORT_EV_UP, gen, 0);
        break;
    case WEBSOCKET_EVENT_DISCONNECTED:
    case WEBSOCKET_EVENT_CLOSED:
        port_post(PORT_EV_DOWN, gen, 0);
        break;
    case WEBSOCKET_EVENT_DATA:
        if (data->op_code != WS_OPCODE_TEXT && data->payload_offset == 0) {
            break; /* pings, pongs, close frames: the client library answers those */
        }
        if (data->payload_len > (int)sizeof(ws.rx) || data->payload_offset + data->data_len > data->payload_len) {
            ESP_LOGW(TAG, "frame of %d bytes dropped", data->payload_len);
            break;
        }
        memcpy(ws.rx + data->payload_offset, data->data_ptr, (size_t)data->data_len);
        if (data->payload_offset + data->data_len == data->payload_len) {
            port_post_message(gen, NULL, 0, ws.rx, (size_t)data->payload_len);
        }
        break;
    case WEBSOCKET_EVENT_ERROR:
        ESP_LOGW(TAG, "websocket error");
        break;
    default:
        break;
    }
}

static void drop(void)
{
    if (ws.client != NULL) {
        if (esp_websocket_client_is_connected(ws.client)) {
            ESP_ERROR_CHECK_WITHOUT_ABORT(esp_websocket_client_close(ws.client, pdMS_TO_TICKS(WS_SEND_TIMEOUT_MS)));
        }
        ESP_ERROR_CHECK_WITHOUT_ABORT(esp_websocket_client_destroy(ws.client));
        ws.client = NULL;
    }
}

static int tr_connect(void *ctx, const char *client_id, const char *username, const char *password)
{
    (void)ctx;
    (void)client_id;
    (void)username;
    (void)password;
    drop();
    ws.generation = port_next_generation();
    const esp_websocket_client_config_t config = {
        .uri = ws.uri,
        .disable_auto_reconnect = true, /* the core backs off and reconnects */
        .buffer_size = NXG_MAX_MESSAGE_BYTES,
        .network_timeout_ms = 10000,
    };
    ws.client = esp_websocket_client_init(&config);
    if (ws.client == NULL) {
        return -1;
    }
    esp_err_t err = esp_websocket_register_events(ws.client, WEBSOCKET_EVENT_ANY, ws_event_handler,
                                                  (void *)(uintptr_t)ws.generation);
    if (err == ESP_OK) {
        err = esp_websocket_client_start(ws.client);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "start failed: %s", esp_err_to_name(err));
        drop();
        return -1;
    }
    return 0;
}

static int tr_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
    (void)ctx;
    (void)topic;
    if (ws.client == NULL || !esp_websocket_client_is_connected(ws.client)) {
        return -1;
    }
    int sent = esp_websocket_client_send_text(ws.client, payload, (int)len, pdMS_TO_TICKS(WS_SEND_TIMEOUT_MS));
    return sent == (int)len ? 0 : -1;
}

static void tr_disconnect(void *ctx)
{
    (void)ctx;
    port_next_generation();
    drop();
}

nxg_transport_t port_transport_ws(const char *uri)
{
    ws.uri = uri;
    return (nxg_transport_t){
        .wire = NXG_WIRE_GATEWAY,
        .ctx = &ws,
        .connect = tr_connect,
        .subscribe = NULL,
        .publish = tr_publish,
        .disconnect = tr_disconnect,
    };
}
