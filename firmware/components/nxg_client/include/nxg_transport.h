/*
 * nxg_transport: the one interface both transports implement (MQTT and the /ws/gateway socket).
 *
 * A transport only moves bytes; the core (nxg_client.c) speaks the protocol. Calls are
 * non-blocking: connect() starts a connection and its outcome arrives later through
 * nxg_client_on_transport_up / _refused / _down (nxg_client.h). Every function returns 0 on
 * success and a negative value when it could not even start; the core then backs off.
 *
 * Strings passed in are borrowed for the duration of the call: a transport that sends later
 * (libwebsockets writes only when the socket is writable) copies them into its own fixed buffers.
 */
#ifndef NXG_TRANSPORT_H
#define NXG_TRANSPORT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NXG_WIRE_MQTT = 0, /* topics nxg/{S}/..., credentials in CONNECT, CONNACK codes */
    NXG_WIRE_GATEWAY,  /* one JSON WebSocket: every frame carries "t", pair/auth in band */
} nxg_wire_t;

typedef enum {
    NXG_CHANNEL_TELEMETRY = 0,
    NXG_CHANNEL_STATUS,
    NXG_CHANNEL_EVENT,
} nxg_channel_t;

typedef struct {
    nxg_wire_t wire;
    void *ctx; /* the transport's own state; borrowed by the core */
    /*
     * Opens a connection. MQTT: CONNECT with these credentials, clean session, keepalive 30 s.
     * Gateway: opens the socket; the credentials are NULL (they travel in band).
     */
    int (*connect)(void *ctx, const char *client_id, const char *username, const char *password);
    /* MQTT only (QoS 1). The gateway leaves it NULL. */
    int (*subscribe)(void *ctx, const char *topic);
    /* MQTT: PUBLISH on topic at QoS 1. Gateway: one text frame (topic is NULL). */
    int (*publish)(void *ctx, const char *topic, const char *payload, size_t len);
    /* Closes the connection (an MQTT DISCONNECT / a WebSocket close). No event follows. */
    void (*disconnect)(void *ctx);
} nxg_transport_t;

#ifdef __cplusplus
}
#endif

#endif /* NXG_TRANSPORT_H */
