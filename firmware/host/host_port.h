/*
 * The POSIX host port of nxg_client: a token file standing in for NVS, and the two transports
 * (libmosquitto, libwebsockets), each with a service() the main loop calls instead of the
 * ESP32's event tasks. Everything runs in one thread.
 */
#ifndef NXG_HOST_PORT_H
#define NXG_HOST_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "nxg_client.h"
#include "nxg_sha256.h"

/* ---- token file: "serial token\n", written to a temp file and renamed (mode 0600) ---------- */
nxg_store_t host_store_file(const char *path);

/* ---- transports ------------------------------------------------------------------------------ */
typedef struct host_transport host_transport_t;

struct host_transport {
    nxg_transport_t base;  /* what the core uses; base.ctx points at the transport's own state */
    nxg_client_t *client;  /* where events go; set before the first tick */
    /* Runs the transport for at most timeout_ms (events are delivered from here). */
    void (*service)(host_transport_t *t, int timeout_ms);
    /* True when nothing sent is still waiting to go out (or for its PUBACK). */
    bool (*idle)(host_transport_t *t);
    /* Frees everything the transport holds (after a disconnect). */
    void (*destroy)(host_transport_t *t);
    /* MQTT only, optional: a device session also subscribes nxg/{S}/http/req, and those
     * requests go here instead of the core (http_page.c answers them). */
    void (*on_http)(void *user, const char *topic, const char *data, size_t len);
    void *http_user;
};

/* ---- the web page behind the server's HTTP proxy (http_page.c) -------------------------------- */
typedef struct {
    const nxg_client_t *client; /* its serial and state */
    host_transport_t *transport;
    const bool *turn1_open;
    const bool *led_on;
    uint64_t started_ms;
} host_http_t;

/* An on_http handler: GET / answers the device's status as JSON, anything else 404. */
void host_http_answer(void *user, const char *topic, const char *data, size_t len);

/* Each returns NULL when the library cannot be set up. `host` and the strings are borrowed. */
host_transport_t *host_transport_mqtt(const char *host, int port);
host_transport_t *host_transport_ws(const char *host, int port, const char *path);

uint64_t host_now_ms(void);

/* ---- firmware download (ota_http.c) ---------------------------------------------------------- */
typedef struct {
    char url[NXG_OTA_MAX_URL];
    char checksum[NXG_SHA256_HEX_BYTES];
    char version[NXG_OTA_MAX_VERSION];
    uint64_t size;
    const char *token; /* the device's token: Authorization: Bearer */
    const char *dir;   /* --ota-dir */
    void (*progress)(void *user, uint64_t done, uint64_t total); /* also where the port keeps MQTT alive */
    void (*log)(void *user, const char *line);
    void *user;
} host_ota_t;

/* Downloads, resumes, verifies and stores one release (blocking; `progress` runs between reads).
 * NULL on success (<dir>/firmware-<version>.bin and <dir>/current written), else the reason. */
const char *host_ota_download(host_ota_t *ota);

#endif /* NXG_HOST_PORT_H */
