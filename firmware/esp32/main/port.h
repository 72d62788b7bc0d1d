/*
 * The ESP32 port of nxg_client: its transports, token store and Wi-Fi, and the one task that
 * owns the client.
 *
 * The core is not thread-safe, and esp-mqtt / esp_websocket_client call their event handlers
 * from their own tasks. So the handlers never touch the client: they copy each event into a
 * fixed queue (port_post_*), and the nxg task (app_main.c) feeds them to the core with
 * port_dispatch(). Every transport call (connect, publish, disconnect) is made from that task too.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "nxg_client.h"

#define PORT_TOPIC_BYTES 96

typedef enum {
    PORT_EV_UP,
    PORT_EV_REFUSED,
    PORT_EV_DOWN,
    PORT_EV_MESSAGE,
} port_event_kind_t;

/* Creates the event queue (static storage). Call once before any transport starts. */
esp_err_t port_init(void);

/* From a transport's event handler. `generation` names the connection the event belongs to:
 * events of a connection the core has already left are dropped. Never blocks. */
void port_post(port_event_kind_t kind, uint32_t generation, int rc);
void port_post_message(uint32_t generation, const char *topic, size_t topic_len, const char *data, size_t len);

/* The generation of the current connection; each transport's connect() bumps it. */
uint32_t port_generation(void);
uint32_t port_next_generation(void);

/* From the nxg task: waits up to timeout_ms for events and hands them to the client. */
void port_dispatch(nxg_client_t *client, uint32_t timeout_ms);

/* Transports and store */
nxg_transport_t port_transport_mqtt(const char *uri);
nxg_transport_t port_transport_ws(const char *uri);
nxg_store_t port_store_nvs(void);

/* Station mode with the SSID and password of menuconfig; returns once an address is assigned. */
esp_err_t port_wifi_connect(void);
