/*
 * nxg-device: the POSIX host client, the same core as the ESP32 example (esp32/main/app_main.c)
 * with a file standing in for NVS.
 *
 *   nxg-device --host H --port P [--transport mqtt|ws] [--code C] --store FILE
 *              [--interval-ms N] [--count N] [--ota-dir DIR] [--fw-version V]
 *
 * Pairs with --code when FILE holds no token, stores the token and authenticates with it
 * afterwards; publishes {"temp","uptime_s"} every interval (--count N: N readings, then exit);
 * handles turn1 open/close and led on/off; over MQTT, answers GET / through the server's HTTP proxy
 * with its status (http_page.c). One log line per transition on stdout. SIGTERM or
 * SIGINT: clean disconnect, exit 0.
 *
 * Firmware updates (`_ota`, with --ota-dir): downloads the release with the device's token,
 * resuming with Range when the connection drops, verifies its SHA-256, writes
 * DIR/firmware-<version>.bin and DIR/current, reports ota_started / ota_progress / ota_applied
 * (or ota_failed) events, then its new version in status as "fw". The running version is
 * DIR/current when present, else --fw-version (default 1.0.0).
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host_port.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

uint64_t host_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the application: what an ESP32 example does too ------------------------------------- */

typedef struct {
    nxg_client_t client;
    bool turn1_open;
    bool led_on;
    bool status_dirty; /* a status change to report */
    uint32_t rng;
    host_transport_t *transport;
    const char *ota_dir;
    char fw[NXG_OTA_MAX_VERSION]; /* the running firmware version, reported as status "fw" */
    bool ota_pending;             /* an accepted _ota waiting for the loop */
    host_ota_t ota;
    int ota_reported; /* the last progress step (quarters) reported */
} app_t;

static void app_log(void *user, const char *line)
{
    (void)user;
    printf("%s\n", line);
    fflush(stdout);
}

static uint32_t app_random(void *user)
{
    app_t *app = user;
    /* xorshift32: jitter needs spread, not secrecy */
    uint32_t x = app->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    app->rng = x;
    return x;
}

static void on_turn1(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    app_t *app = user;
    app->turn1_open = strcmp(cmd->action, "open") == 0;
    app->status_dirty = true;
    reply->result = cJSON_CreateObject();
    if (reply->result != NULL && cJSON_AddStringToObject(reply->result, "turn1", app->turn1_open ? "open" : "closed") == NULL) {
        cJSON_Delete(reply->result);
        reply->result = NULL;
    }
}

static void on_led(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)reply;
    app_t *app = user;
    app->led_on = strcmp(cmd->action, "on") == 0;
    app->status_dirty = true;
}

/* `_ota`: accept it and leave the download to the main loop (the ack goes out first). */
static const char *on_ota(void *user, const nxg_ota_request_t *request)
{
    app_t *app = user;
    if (app->ota_dir == NULL) {
        return "no --ota-dir: firmware updates are off";
    }
    if (app->ota_pending) {
        return "an update is already running";
    }
    snprintf(app->ota.url, sizeof(app->ota.url), "%s", request->url);
    snprintf(app->ota.checksum, sizeof(app->ota.checksum), "%s", request->checksum);
    snprintf(app->ota.version, sizeof(app->ota.version), "%s", request->version);
    app->ota.size = request->size;
    app->ota_pending = true;
    return NULL;
}

static void send_ota_event(app_t *app, const char *type, int progress, const char *error)
{
    cJSON *event = cJSON_CreateObject();
    bool ok = event != NULL && cJSON_AddStringToObject(event, "type", type) != NULL &&
              cJSON_AddStringToObject(event, "category", "ota") != NULL &&
              cJSON_AddStringToObject(event, "version", app->ota.version) != NULL &&
              (progress < 0 || cJSON_AddNumberToObject(event, "progress", progress) != NULL) &&
              (error == NULL || (cJSON_AddStringToObject(event, "error", error) != NULL &&
                                 cJSON_AddStringToObject(event, "severity", "Error") != NULL));
    if (ok) {
        nxg_client_send(&app->client, NXG_CHANNEL_EVENT, event);
    }
    cJSON_Delete(event);
}

static void ota_progress(void *user, uint64_t done, uint64_t total)
{
    app_t *app = user;
    app->transport->service(app->transport, 0); /* keep MQTT alive while downloading */
    int quarter = total > 0 ? (int)(done * 4 / total) : 4;
    if (quarter > app->ota_reported && quarter < 4) {
        app->ota_reported = quarter;
        send_ota_event(app, "ota_progress", quarter * 25, NULL);
    }
}

static void run_ota(app_t *app)
{
    char line[160];
    snprintf(line, sizeof(line), "ota %s: downloading %llu bytes", app->ota.version, (unsigned long long)app->ota.size);
    app_log(app, line);
    app->ota_reported = 0;
    send_ota_event(app, "ota_started", 0, NULL);
    app->ota.token = app->client.token;
    app->ota.dir = app->ota_dir;
    app->ota.progress = ota_progress;
    app->ota.log = app_log;
    app->ota.user = app;
    const char *why = host_ota_download(&app->ota);
    if (why == NULL) {
        snprintf(app->fw, sizeof(app->fw), "%s", app->ota.version);
        snprintf(line, sizeof(line), "ota %s: checksum ok, applied", app->ota.version);
        send_ota_event(app, "ota_applied", 100, NULL);
        app->status_dirty = true; /* the new version goes out as "fw" */
    } else {
        snprintf(line, sizeof(line), "ota %s: failed: %s", app->ota.version, why);
        send_ota_event(app, "ota_failed", -1, why);
    }
    app_log(app, line);
    app->ota_pending = false;
}

static void load_fw_version(app_t *app, const char *fallback)
{
    snprintf(app->fw, sizeof(app->fw), "%s", fallback);
    if (app->ota_dir == NULL) {
        return;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/current", app->ota_dir);
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return;
    }
    char version[NXG_OTA_MAX_VERSION] = {0};
    if (fgets(version, sizeof(version), file) != NULL) {
        version[strcspn(version, "\r\n")] = '\0';
        if (version[0] != '\0') {
            snprintf(app->fw, sizeof(app->fw), "%s", version);
        }
    }
    fclose(file);
}

static const char *const TURN1_ACTIONS[] = {"open", "close", NULL};
static const char *const LED_ACTIONS[] = {"on", "off", NULL};

static void send_status(app_t *app)
{
    cJSON *status = cJSON_CreateObject();
    if (status != NULL && cJSON_AddStringToObject(status, "turn1", app->turn1_open ? "open" : "closed") != NULL &&
        cJSON_AddStringToObject(status, "led", app->led_on ? "on" : "off") != NULL &&
        cJSON_AddStringToObject(status, "fw", app->fw) != NULL &&
        nxg_client_send(&app->client, NXG_CHANNEL_STATUS, status) == NXG_OK) {
        app->status_dirty = false;
    }
    cJSON_Delete(status);
}

static bool send_telemetry(app_t *app, uint64_t uptime_ms)
{
    cJSON *reading = cJSON_CreateObject();
    /* a plausible room temperature that moves a little */
    double temp = 21.0 + (double)(uptime_ms / 1000 % 20) / 10.0;
    bool ok = reading != NULL && cJSON_AddNumberToObject(reading, "temp", temp) != NULL &&
              cJSON_AddNumberToObject(reading, "uptime_s", (double)(uptime_ms / 1000)) != NULL &&
              nxg_client_send(&app->client, NXG_CHANNEL_TELEMETRY, reading) == NXG_OK;
    cJSON_Delete(reading);
    return ok;
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: nxg-device --host H --port P [--transport mqtt|ws] [--code C] --store FILE\n"
                    "                  [--interval-ms N] [--count N] [--ota-dir DIR] [--fw-version V]\n");
}

static bool parse_uint(const char *text, long max, long *out)
{
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < 0 || value > max) {
        return false;
    }
    *out = value;
    return true;
}

int main(int argc, char **argv)
{
    const char *host = NULL, *transport = "mqtt", *code = NULL, *store = NULL, *ota_dir = NULL, *fw = "1.0.0";
    long port = -1, interval_ms = 5000, count = 0;
    static const struct option options[] = {
        {"host", required_argument, NULL, 'h'},        {"port", required_argument, NULL, 'p'},
        {"transport", required_argument, NULL, 't'},   {"code", required_argument, NULL, 'c'},
        {"store", required_argument, NULL, 's'},       {"interval-ms", required_argument, NULL, 'i'},
        {"count", required_argument, NULL, 'n'},       {"ota-dir", required_argument, NULL, 'o'},
        {"fw-version", required_argument, NULL, 'f'},  {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            ok = parse_uint(optarg, 65535, &port) && port > 0;
            break;
        case 't':
            transport = optarg;
            ok = strcmp(transport, "mqtt") == 0 || strcmp(transport, "ws") == 0;
            break;
        case 'c':
            code = optarg;
            break;
        case 's':
            store = optarg;
            break;
        case 'i':
            ok = parse_uint(optarg, 86400000, &interval_ms) && interval_ms > 0;
            break;
        case 'n':
            ok = parse_uint(optarg, 1000000000, &count);
            break;
        case 'o':
            ota_dir = optarg;
            break;
        case 'f':
            fw = optarg;
            ok = fw[0] != '\0' && strlen(fw) < NXG_OTA_MAX_VERSION;
            break;
        default:
            ok = false;
        }
        if (!ok) {
            usage();
            return 2;
        }
    }
    if (host == NULL || port < 0 || store == NULL || optind != argc) {
        usage();
        return 2;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "nxg-device: libmosquitto did not initialise\n");
        return 1;
    }
    bool ws = strcmp(transport, "ws") == 0;
    host_transport_t *t = ws ? host_transport_ws(host, (int)port, "/ws/gateway") : host_transport_mqtt(host, (int)port);
    if (t == NULL) {
        fprintf(stderr, "nxg-device: could not set up the %s transport\n", transport);
        mosquitto_lib_cleanup();
        return 1;
    }

    static app_t app;
    app.transport = t;
    app.ota_dir = ota_dir;
    load_fw_version(&app, fw);
    app.rng = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    const nxg_config_t config = {
        .serial = NULL, /* learnt at pairing, kept in the store */
        .code = code,
        .pair_id = NULL,
        .transport = t->base,
        .store = host_store_file(store),
        .random = app_random,
        .log = app_log,
        .user = &app,
    };
    nxg_err_t err = nxg_client_init(&app.client, &config);
    if (err == NXG_OK) {
        err = nxg_client_on_command(&app.client, "turn1", TURN1_ACTIONS, "a door: open or close", on_turn1);
    }
    if (err == NXG_OK) {
        err = nxg_client_on_command(&app.client, "led", LED_ACTIONS, "the status LED: on or off", on_led);
    }
    if (err == NXG_OK) {
        err = nxg_client_on_ota(&app.client, on_ota);
    }
    if (err != NXG_OK) {
        fprintf(stderr, "nxg-device: %s\n", nxg_err_name(err));
        t->destroy(t);
        mosquitto_lib_cleanup();
        return 1;
    }
    t->client = &app.client;
    const host_http_t http = {
        .client = &app.client,
        .transport = t,
        .turn1_open = &app.turn1_open,
        .led_on = &app.led_on,
        .started_ms = host_now_ms(),
    };
    t->on_http = host_http_answer; /* GET / through the server's HTTP proxy (MQTT only) */
    t->http_user = (void *)&http;

    const uint64_t started = host_now_ms();
    uint64_t next_reading = started;
    long sent = 0;
    bool was_online = false;
    while (!stop_requested) {
        uint64_t now = host_now_ms();
        nxg_client_tick(&app.client, now);
        if (app.client.state == NXG_STATE_STOPPED) {
            break;
        }
        bool online = app.client.state == NXG_STATE_ONLINE;
        if (online && !was_online) {
            app.status_dirty = true; /* the server learns the current state on every connect */
        }
        was_online = online;
        if (online && app.ota_pending && t->idle(t)) {
            run_ota(&app); /* once the ack is out */
        }
        if (online && app.status_dirty) {
            send_status(&app);
        }
        if (online && now >= next_reading) {
            if (send_telemetry(&app, now - started)) {
                sent++;
            }
            next_reading = now + (uint64_t)interval_ms;
            if (count > 0 && sent >= count) {
                break;
            }
        }
        uint64_t wait = nxg_client_next_tick_ms(&app.client);
        if (online && next_reading > now && next_reading - now < wait) {
            wait = next_reading - now;
        }
        t->service(t, (int)(wait > 200 ? 200 : wait));
    }

    /* clean exit: what was sent goes out (bounded), then DISCONNECT / close frame */
    for (uint64_t until = host_now_ms() + 2000; !t->idle(t) && host_now_ms() < until;) {
        t->service(t, 20);
    }
    nxg_client_stop(&app.client);
    for (int i = 0; i < 5; i++) {
        t->service(t, 10);
    }
    printf("stopped\n");
    fflush(stdout);
    t->destroy(t);
    mosquitto_lib_cleanup();
    return 0;
}
