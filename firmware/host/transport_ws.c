/*
 * The /ws/gateway transport of the host client, on libwebsockets (the ESP32 uses
 * esp_websocket_client). libwebsockets writes only from LWS_CALLBACK_CLIENT_WRITEABLE, so
 * outgoing frames wait in a fixed ring; incoming fragments are joined in a fixed buffer.
 */
#define _POSIX_C_SOURCE 200809L
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "host_port.h"

#ifndef NXG_WS_TX_SLOTS
#define NXG_WS_TX_SLOTS 8 /* frames waiting for the socket; a full ring refuses (the core counts it) */
#endif

typedef struct {
    unsigned char buf[LWS_PRE + NXG_MAX_MESSAGE_BYTES];
    size_t len;
} frame_t;

typedef struct {
    host_transport_t t;
    const char *host;
    int port;
    const char *path;
    struct lws_context *context;
    struct lws *wsi; /* the current connection; an older one still closing is not this */
    bool open;       /* connected or connecting, and not closed by us */
    frame_t tx[NXG_WS_TX_SLOTS];
    size_t tx_head, tx_count;
    char rx[NXG_MAX_MESSAGE_BYTES + 1];
    size_t rx_len;
    bool rx_overflow;
    lws_sorted_usec_list_t wake;
} ws_t;

static ws_t *of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void lost(ws_t *w)
{
    w->wsi = NULL;
    if (w->open) {
        w->open = false;
        nxg_client_on_transport_down(w->t.client);
    }
}

static void received(ws_t *w, struct lws *wsi, const void *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        w->rx_len = 0;
        w->rx_overflow = false;
    }
    if (w->rx_len + len > NXG_MAX_MESSAGE_BYTES) {
        w->rx_overflow = true; /* dropped whole when it ends; the decoder would refuse it anyway */
    } else {
        memcpy(w->rx + w->rx_len, in, len);
        w->rx_len += len;
    }
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        if (w->rx_overflow) {
            w->t.client->stats.rx_errors++;
        } else {
            nxg_client_on_transport_message(w->t.client, NULL, w->rx, w->rx_len);
        }
        w->rx_len = 0;
    }
}

static int writeable(ws_t *w, struct lws *wsi)
{
    if (wsi != w->wsi) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1; /* a connection we closed: send the close frame and let it go */
    }
    if (w->tx_count == 0) {
        return 0;
    }
    frame_t *f = &w->tx[w->tx_head];
    if (lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int)f->len) {
        return -1;
    }
    w->tx_head = (w->tx_head + 1) % NXG_WS_TX_SLOTS;
    w->tx_count--;
    if (w->tx_count > 0) {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    ws_t *w = of(wsi);
    if (w == NULL) {
        return 0;
    }
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (wsi == w->wsi) {
            nxg_client_on_transport_up(w->t.client);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (wsi == w->wsi) {
            received(w, wsi, in, len);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return writeable(w, wsi);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi == w->wsi) {
            lost(w);
        }
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (wsi == w->wsi) {
            lost(w);
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {.name = "nxg-gateway", .callback = callback, .rx_buffer_size = NXG_MAX_MESSAGE_BYTES},
    {.name = NULL, .callback = NULL},
};

static int tr_connect(void *ctx, const char *client_id, const char *username, const char *password)
{
    (void)client_id; /* the gateway authenticates in band */
    (void)username;
    (void)password;
    ws_t *w = ctx;
    w->tx_head = w->tx_count = 0;
    w->rx_len = 0;
    w->open = true;
    struct lws_client_connect_info info = {
        .context = w->context,
        .address = w->host,
        .port = w->port,
        .path = w->path,
        .host = w->host,
        .origin = w->host,
        .local_protocol_name = "nxg-gateway",
        .pwsi = &w->wsi, /* set before any callback of this connection runs */
    };
    if (lws_client_connect_via_info(&info) == NULL) {
        w->open = false;
        w->wsi = NULL;
        return -1;
    }
    return 0;
}

static int tr_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
    (void)topic;
    ws_t *w = ctx;
    if (w->wsi == NULL || len > NXG_MAX_MESSAGE_BYTES || w->tx_count == NXG_WS_TX_SLOTS) {
        return -1;
    }
    frame_t *f = &w->tx[(w->tx_head + w->tx_count) % NXG_WS_TX_SLOTS];
    memcpy(f->buf + LWS_PRE, payload, len);
    f->len = len;
    w->tx_count++;
    lws_callback_on_writable(w->wsi);
    return 0;
}

static void tr_disconnect(void *ctx)
{
    ws_t *w = ctx;
    w->open = false;
    struct lws *old = w->wsi;
    w->wsi = NULL;
    if (old != NULL) {
        lws_callback_on_writable(old); /* closes it from there (see writeable) */
    }
    w->tx_count = 0;
}

static void wake(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only ends lws_service()'s wait */
}

static void service(host_transport_t *t, int timeout_ms)
{
    ws_t *w = (ws_t *)t;
    /* lws_service() sleeps until its next scheduled event: schedule one for our timeout */
    lws_sul_schedule(w->context, 0, &w->wake, wake, (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    lws_service(w->context, 0);
}

static bool idle(host_transport_t *t)
{
    ws_t *w = (ws_t *)t;
    return w->tx_count == 0;
}

static void destroy(host_transport_t *t)
{
    ws_t *w = (ws_t *)t;
    lws_sul_cancel(&w->wake);
    lws_context_destroy(w->context);
    free(w);
}

host_transport_t *host_transport_ws(const char *host, int port, const char *path)
{
    ws_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info = {
        .port = CONTEXT_PORT_NO_LISTEN,
        .protocols = protocols,
        .user = w,
        .gid = -1,
        .uid = -1,
    };
    w->context = lws_create_context(&info);
    if (w->context == NULL) {
        free(w);
        return NULL;
    }
    w->host = host;
    w->port = port;
    w->path = path;
    w->t = (host_transport_t){
        .base =
            {
                .wire = NXG_WIRE_GATEWAY,
                .ctx = w,
                .connect = tr_connect,
                .subscribe = NULL,
                .publish = tr_publish,
                .disconnect = tr_disconnect,
            },
        .service = service,
        .idle = idle,
        .destroy = destroy,
    };
    return &w->t;
}
