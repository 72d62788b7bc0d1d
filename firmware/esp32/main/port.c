/* The event queue between the transports' tasks and the nxg task (see port.h). */
#include "port.h"

#include <stdatomic.h>
#include <string.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"

#define QUEUE_LEN 4 /* a burst of commands waits here; beyond it the broker's QoS 1 redelivers */

typedef struct {
    port_event_kind_t kind;
    uint32_t generation;
    int rc;
    size_t len;
    char topic[PORT_TOPIC_BYTES];
    char data[NXG_MAX_MESSAGE_BYTES];
} port_event_t;

static const char *TAG = "nxg_port";
static StaticQueue_t queue_state;
static uint8_t queue_storage[QUEUE_LEN * sizeof(port_event_t)];
static QueueHandle_t queue;
static port_event_t incoming; /* only the nxg task reads from the queue */
static _Atomic uint32_t generation;

esp_err_t port_init(void)
{
    queue = xQueueCreateStatic(QUEUE_LEN, sizeof(port_event_t), queue_storage, &queue_state);
    return queue != NULL ? ESP_OK : ESP_FAIL;
}

uint32_t port_generation(void)
{
    return atomic_load(&generation);
}

uint32_t port_next_generation(void)
{
    return atomic_fetch_add(&generation, 1) + 1;
}

static void post(const port_event_t *event)
{
    if (xQueueSend(queue, event, 0) != pdTRUE) {
        ESP_LOGW(TAG, "event queue full: event %d dropped", (int)event->kind);
    }
}

void port_post(port_event_kind_t kind, uint32_t gen, int rc)
{
    /* static: an event is too large for the handler task's stack; one transport is active at a
     * time and its handlers run in its one task, so nothing else writes it meanwhile */
    static port_event_t event;
    event.kind = kind;
    event.generation = gen;
    event.rc = rc;
    event.len = 0;
    event.topic[0] = '\0';
    post(&event);
}

void port_post_message(uint32_t gen, const char *topic, size_t topic_len, const char *data, size_t len)
{
    static port_event_t event;
    if (len > sizeof(event.data) || topic_len >= sizeof(event.topic)) {
        ESP_LOGW(TAG, "message of %u bytes dropped (NXG_MAX_MESSAGE_BYTES)", (unsigned)len);
        return;
    }
    event.kind = PORT_EV_MESSAGE;
    event.generation = gen;
    event.rc = 0;
    memcpy(event.topic, topic != NULL ? topic : "", topic != NULL ? topic_len : 0);
    event.topic[topic != NULL ? topic_len : 0] = '\0';
    memcpy(event.data, data, len);
    event.len = len;
    post(&event);
}

void port_dispatch(nxg_client_t *client, uint32_t timeout_ms)
{
    TickType_t wait = pdMS_TO_TICKS(timeout_ms);
    while (xQueueReceive(queue, &incoming, wait) == pdTRUE) {
        wait = 0;
        if (incoming.generation != port_generation()) {
            continue; /* from a connection the core has already closed */
        }
        switch (incoming.kind) {
        case PORT_EV_UP:
            nxg_client_on_transport_up(client);
            break;
        case PORT_EV_REFUSED:
            nxg_client_on_transport_refused(client, incoming.rc);
            break;
        case PORT_EV_DOWN:
            nxg_client_on_transport_down(client);
            break;
        case PORT_EV_MESSAGE:
            nxg_client_on_transport_message(client, incoming.topic[0] != '\0' ? incoming.topic : NULL,
                                            incoming.data, incoming.len);
            break;
        }
    }
}
