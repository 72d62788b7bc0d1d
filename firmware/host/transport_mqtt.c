/* The MQTT transport of the host client, on libmosquitto (the ESP32 uses esp-mqtt the same way). */
#define _POSIX_C_SOURCE 200809L
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_port.h"

typedef struct {
    host_transport_t t;
    const char *host;
    int port;
    struct mosquitto *mosq; /* one per connection: each CONNECT has its own credentials */
    bool open;              /* connected or connecting, and not closed by us */
    int inflight;           /* QoS 1 publishes without their PUBACK */
    char http_req[NXG_MAX_SERIAL_BYTES + 16]; /* nxg/{S}/http/req of a device session, else "" */
} mqtt_t;

#define KEEPALIVE_S 30 /* PROTOCOL §2: firmware uses 30 s */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mqtt_t *m = obj;
    if (rc == 0) {
        if (m->t.on_http != NULL && m->http_req[0] != '\0') {
            (void)mosquitto_subscribe(mosq, NULL, m->http_req, 1);
        }
        nxg_client_on_transport_up(m->t.client);
    } else {
        nxg_client_on_transport_refused(m->t.client, rc);
    }
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    (void)rc;
    mqtt_t *m = obj;
    if (m->open) {
        m->open = false;
        nxg_client_on_transport_down(m->t.client);
    }
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    (void)mosq;
    mqtt_t *m = obj;
    if (m->http_req[0] != '\0' && strcmp(msg->topic, m->http_req) == 0) {
        m->t.on_http(m->t.http_user, msg->topic, msg->payload, (size_t)msg->payloadlen);
        return;
    }
    nxg_client_on_transport_message(m->t.client, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq;
    (void)mid;
    mqtt_t *m = obj;
    if (m->inflight > 0) {
        m->inflight--;
    }
}

/* Never from inside a libmosquitto callback (mosquitto_loop is not re-entrant). */
static void drop(mqtt_t *m)
{
    if (m->mosq != NULL) {
        /* let a queued DISCONNECT out before the handle goes */
        for (int i = 0; i < 10 && mosquitto_want_write(m->mosq); i++) {
            if (mosquitto_loop_write(m->mosq, 1) != MOSQ_ERR_SUCCESS) {
                break;
            }
        }
        mosquitto_destroy(m->mosq);
        m->mosq = NULL;
    }
    m->open = false;
    m->inflight = 0;
}

static int tr_connect(void *ctx, const char *client_id, const char *username, const char *password)
{
    mqtt_t *m = ctx;
    drop(m);
    /* a device logs in as its serial (client id = user name); pairing sessions get no page */
    m->http_req[0] = '\0';
    if (username != NULL && strcmp(client_id, username) == 0 &&
        (size_t)snprintf(m->http_req, sizeof m->http_req, "nxg/%s/http/req", client_id) >= sizeof m->http_req) {
        m->http_req[0] = '\0';
    }
    m->mosq = mosquitto_new(client_id, true, m);
    if (m->mosq == NULL) {
        return -1;
    }
    mosquitto_connect_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
    mosquitto_message_callback_set(m->mosq, on_message);
    mosquitto_publish_callback_set(m->mosq, on_publish);
    if (mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311) != MOSQ_ERR_SUCCESS ||
        mosquitto_username_pw_set(m->mosq, username, password) != MOSQ_ERR_SUCCESS) {
        drop(m);
        return -1;
    }
    /* blocking only for the TCP connect; the CONNACK arrives through service() */
    if (mosquitto_connect(m->mosq, m->host, m->port, KEEPALIVE_S) != MOSQ_ERR_SUCCESS) {
        drop(m);
        return -1;
    }
    m->open = true;
    return 0;
}

static int tr_subscribe(void *ctx, const char *topic)
{
    mqtt_t *m = ctx;
    return m->mosq != NULL && mosquitto_subscribe(m->mosq, NULL, topic, 1) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static int tr_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
    mqtt_t *m = ctx;
    if (m->mosq == NULL || len > (size_t)NXG_MAX_MESSAGE_BYTES) {
        return -1;
    }
    if (mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, 1, false) != MOSQ_ERR_SUCCESS) {
        return -1;
    }
    m->inflight++;
    return 0;
}

static void tr_disconnect(void *ctx)
{
    mqtt_t *m = ctx;
    m->open = false; /* no down event for a disconnect we asked for */
    if (m->mosq != NULL) {
        /* inside a callback this only queues the DISCONNECT: drop() or service() writes it */
        (void)mosquitto_disconnect(m->mosq);
    }
}

static void service(host_transport_t *t, int timeout_ms)
{
    mqtt_t *m = (mqtt_t *)t;
    if (m->mosq == NULL) {
        struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    int rc = mosquitto_loop(m->mosq, timeout_ms, 1);
    if (rc != MOSQ_ERR_SUCCESS && m->open) {
        /* a lost connection without on_disconnect (e.g. the socket failed mid-read) */
        m->open = false;
        nxg_client_on_transport_down(m->t.client);
    } else if (rc != MOSQ_ERR_SUCCESS) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
        nanosleep(&ts, NULL); /* closed by us: do not spin until the next connect */
    }
}

static bool idle(host_transport_t *t)
{
    mqtt_t *m = (mqtt_t *)t;
    return m->mosq == NULL || !m->open || (m->inflight == 0 && !mosquitto_want_write(m->mosq));
}

static void destroy(host_transport_t *t)
{
    mqtt_t *m = (mqtt_t *)t;
    drop(m);
    free(m);
}

host_transport_t *host_transport_mqtt(const char *host, int port)
{
    mqtt_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    m->host = host;
    m->port = port;
    m->t = (host_transport_t){
        .base =
            {
                .wire = NXG_WIRE_MQTT,
                .ctx = m,
                .connect = tr_connect,
                .subscribe = tr_subscribe,
                .publish = tr_publish,
                .disconnect = tr_disconnect,
            },
        .service = service,
        .idle = idle,
        .destroy = destroy,
    };
    return &m->t;
}
