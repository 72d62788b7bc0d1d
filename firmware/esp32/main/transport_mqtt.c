/*
 * The MQTT transport of the ESP32 port, on esp-mqtt. One esp-mqtt client per connection (each
 * CONNECT has its own credentials: the pairing session, then the device); esp-mqtt's own
 * reconnect is off because the core decides when to try again (backoff with jitter).
 */
#include <string.h>

#include "esp_log.h"
#include "mqtt_client.h"
#include "port.h"

static const char *TAG = "nxg_mqtt";

typedef struct {
    const char *uri;
    esp_mqtt_client_handle_t client;
    uint32_t generation;
} mqtt_t;

static mqtt_t mqtt;

static void mqtt_event_handler(void *handler_args, esp_event_base_t base, int32_t event_id, void *event_data)
{
    (void)base;
    uint32_t gen = (uint32_t)(uintptr_t)handler_args;
    esp_mqtt_event_handle_t event = event_data;
    switch ((esp_mqtt_event_id_t)event_id) {
    case MQTT_EVENT_CONNECTED:
        port_post(PORT_EV_UP, gen, 0);
        break;
    case MQTT_EVENT_DISCONNECTED:
        port_post(PORT_EV_DOWN, gen, 0);
        break;
    case MQTT_EVENT_DATA:
        if (event->current_data_offset != 0 || event->data_len != event->total_data_len) {
            ESP_LOGW(TAG, "fragmented message of %d bytes dropped", event->total_data_len);
            break; /* .buffer.size holds any message the core accepts */
        }
        port_post_message(gen, event->topic, (size_t)event->topic_len, event->data, (size_t)event->data_len);
        break;
    case MQTT_EVENT_ERROR:
        if (event->error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
            /* 4: wrong connection code; 5: token no longer valid (auth_reset_required) */
            port_post(PORT_EV_REFUSED, gen, (int)event->error_handle->connect_return_code);
        }
        break;
    default:
        break;
    }
}

static void drop(void)
{
    if (mqtt.client != NULL) {
        ESP_ERROR_CHECK_WITHOUT_ABORT(esp_mqtt_client_stop(mqtt.client));
        ESP_ERROR_CHECK_WITHOUT_ABORT(esp_mqtt_client_destroy(mqtt.client));
        mqtt.client = NULL;
    }
}

static int tr_connect(void *ctx, const char *client_id, const char *username, const char *password)
{
    (void)ctx;
    drop();
    mqtt.generation = port_next_generation();
    const esp_mqtt_client_config_t config = {
        .broker.address.uri = mqtt.uri,
        .credentials =
            {
                .client_id = client_id,
                .username = username,
                .authentication.password = password,
            },
        .session =
            {
                .keepalive = 30, /* NXG_KEEPALIVE_S */
                .disable_clean_session = false,
                .protocol_ver = MQTT_PROTOCOL_V_3_1_1,
            },
        .network.disable_auto_reconnect = true,
        .buffer.size = NXG_MAX_MESSAGE_BYTES + PORT_TOPIC_BYTES + 16,
    };
    mqtt.client = esp_mqtt_client_init(&config); /* copies the strings */
    if (mqtt.client == NULL) {
        return -1;
    }
    esp_err_t err = esp_mqtt_client_register_event(mqtt.client, ESP_EVENT_ANY_ID, mqtt_event_handler,
                                                   (void *)(uintptr_t)mqtt.generation);
    if (err == ESP_OK) {
        err = esp_mqtt_client_start(mqtt.client);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "start failed: %s", esp_err_to_name(err));
        drop();
        return -1;
    }
    return 0;
}

static int tr_subscribe(void *ctx, const char *topic)
{
    (void)ctx;
    return mqtt.client != NULL && esp_mqtt_client_subscribe(mqtt.client, topic, 1) >= 0 ? 0 : -1;
}

static int tr_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
    (void)ctx;
    if (mqtt.client == NULL) {
        return -1;
    }
    /* enqueue: returns at once; esp-mqtt keeps the QoS 1 message until its PUBACK */
    return esp_mqtt_client_enqueue(mqtt.client, topic, payload, (int)len, 1, 0, true) >= 0 ? 0 : -1;
}

static void tr_disconnect(void *ctx)
{
    (void)ctx;
    port_next_generation(); /* whatever the old client still reports is stale */
    drop();
}

nxg_transport_t port_transport_mqtt(const char *uri)
{
    mqtt.uri = uri;
    return (nxg_transport_t){
        .wire = NXG_WIRE_MQTT,
        .ctx = &mqtt,
        .connect = tr_connect,
        .subscribe = tr_subscribe,
        .publish = tr_publish,
        .disconnect = tr_disconnect,
    };
}
